package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/status"
)

func TestMetricsListenFlag(t *testing.T) {
	s, err := parseServe(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if s.metricsListen != "" {
		t.Errorf("serve: --metrics-listen defaults to %q, want off", s.metricsListen)
	}
	c, err := parseConnect([]string{"-D", "1080", "gw"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.metricsListen != "" {
		t.Errorf("connect: --metrics-listen defaults to %q, want off", c.metricsListen)
	}
	if s, err = parseServe([]string{"--metrics-listen", "9100"}, io.Discard); err != nil {
		t.Errorf("serve --metrics-listen 9100: %v", err)
	} else if s.metricsListen != "9100" {
		t.Errorf("serve --metrics-listen 9100: got %q", s.metricsListen)
	}
	if c, err = parseConnect([]string{"--metrics-listen=[::1]:9100", "-D", "1080", "gw"}, io.Discard); err != nil {
		t.Errorf("connect --metrics-listen [::1]:9100: %v", err)
	} else if c.metricsListen != "[::1]:9100" {
		t.Errorf("connect --metrics-listen [::1]:9100: got %q", c.metricsListen)
	}
	for _, bad := range []string{"", "nope", "99999", ":99999", "-1", "::1", "1.2.3.4", "host.example:9100", "[::1]", "1.2.3.4:", ":"} {
		if _, err := parseServe([]string{"--metrics-listen", bad}, io.Discard); err == nil || !strings.Contains(err.Error(), "metrics-listen") {
			t.Errorf("serve --metrics-listen %q: %v, want an error naming the flag", bad, err)
		}
		if _, err := parseConnect([]string{"--metrics-listen=" + bad, "-D", "1080", "gw"}, io.Discard); err == nil || !strings.Contains(err.Error(), "metrics-listen") {
			t.Errorf("connect --metrics-listen %q: %v, want an error naming the flag", bad, err)
		}
	}
}

func TestMetricsBinds(t *testing.T) {
	loopback := []string{"127.0.0.1:9100", "[::1]:9100"}
	for addr, want := range map[string][]string{
		"9100":              loopback,
		":9100":             loopback,
		"localhost:9100":    loopback,
		"*:9100":            {":9100"},
		"0.0.0.0:9100":      {"0.0.0.0:9100"},
		"[::]:9100":         {"[::]:9100"},
		"198.18.0.1:9100":   {"198.18.0.1:9100"},
		"[2001:2::1]:9100":  {"[2001:2::1]:9100"},
		"[::1]:0":           {"[::1]:0"},
		"127.0.0.1:9100":    {"127.0.0.1:9100"},
		"localhost:0":       {"127.0.0.1:0", "[::1]:0"},
		"[fe80::1%lo]:9100": {"[fe80::1%lo]:9100"},
	} {
		got, err := metricsBinds(addr)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("metricsBinds(%q) = %q, %v; want %q", addr, got, err, want)
		}
	}
}

// TestServeMetricsOff serves what serve and connect parse when the flag is
// not given: nothing may listen.
func TestServeMetricsOff(t *testing.T) {
	s, err := parseServe(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c, err := parseConnect([]string{"-D", "1080", "gw"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []metricsAddr{s.metricsListen, c.metricsListen} {
		before := listeningSockets(t)
		stop, err := serveMetrics(t.Context(), string(addr), newSelfReport("gateway", time.Now()).report, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if opened := diff(listeningSockets(t), before); len(opened) > 0 {
			t.Errorf("no --metrics-listen, and the process listens on %v", opened)
		}
		stop()
	}
}

// TestServeMetricsLoopback serves on a port alone: it must listen on the
// loopback addresses and nowhere else, and serve the page there.
func TestServeMetricsLoopback(t *testing.T) {
	for _, addr := range []string{"0", ":0"} {
		t.Run(addr, func(t *testing.T) {
			before := listeningSockets(t)
			started := time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC)
			stop, err := serveMetrics(t.Context(), addr, newSelfReport("gateway", started).report, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			opened := diff(listeningSockets(t), before)
			var port uint16
			var addrs []netip.Addr
			for _, ap := range opened {
				addrs = append(addrs, ap.Addr())
				if !ap.Addr().IsLoopback() {
					t.Errorf("--metrics-listen %s listens on %s: want loopback only", addr, ap)
				}
				if port != 0 && ap.Port() != port {
					t.Errorf("--metrics-listen %s listens on ports %d and %d: want one", addr, port, ap.Port())
				}
				port = ap.Port()
			}
			want := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
			if hasIPv6Loopback() {
				want = append(want, netip.IPv6Loopback())
			}
			slices.SortFunc(addrs, netip.Addr.Compare)
			if !slices.Equal(addrs, want) {
				t.Errorf("--metrics-listen %s listens on %v, want %v", addr, opened, want)
			}
			for _, a := range want {
				body := scrape(t, fmt.Sprintf("http://%s/metrics", netip.AddrPortFrom(a, port)))
				if !strings.Contains(body, "sshvpn_start_time_seconds 1796688000\n") || !strings.Contains(body, "sshvpn_build_info{") {
					t.Errorf("%s: the page is not the process's Report:\n%s", a, body)
				}
			}
			stop()
			if left := diff(listeningSockets(t), before); len(left) > 0 {
				t.Errorf("after stop, still listening on %v", left)
			}
		})
	}
}

// TestServeMetricsInUse holds the port on ::1 (or 127.0.0.1 without IPv6):
// the error names the flag, and the address that did open is closed again.
func TestServeMetricsInUse(t *testing.T) {
	held := "[::1]:0"
	if !hasIPv6Loopback() {
		held = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", held)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	before := listeningSockets(t)
	stop, err := serveMetrics(t.Context(), port, newSelfReport("client", time.Now()).report, slog.New(slog.DiscardHandler))
	if err == nil {
		stop()
		t.Fatalf("--metrics-listen %s served with the port held on %s", port, ln.Addr())
	}
	if !strings.Contains(err.Error(), "--metrics-listen "+port) || !strings.Contains(err.Error(), "in use") {
		t.Errorf("error %q: want it to name --metrics-listen %s and say the port is in use", err, port)
	}
	if left := diff(listeningSockets(t), before); len(left) > 0 {
		t.Errorf("a failed --metrics-listen left %v listening", left)
	}
}

// TestServeMetricsStopsScrapes checks that stop ends the server: no scrape
// is answered after it.
func TestServeMetricsStopsScrapes(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	before := listeningSockets(t)
	stop, err := serveMetrics(ctx, "127.0.0.1:0", func() status.Report { return status.Report{Role: "client"} }, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	opened := diff(listeningSockets(t), before)
	if len(opened) != 1 {
		t.Fatalf("127.0.0.1:0 opened %v, want one listener", opened)
	}
	url := fmt.Sprintf("http://%s/metrics", opened[0])
	scrape(t, url)
	stop()
	if resp, err := http.Get(url); err == nil {
		resp.Body.Close()
		t.Errorf("a scrape after stop was answered: %s", resp.Status)
	}
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v", url, resp.Status, err)
	}
	return string(b)
}

// listeningSockets is the TCP sockets this process listens on, by inode:
// its socket descriptors matched with the kernel's table of listeners.
func listeningSockets(t *testing.T) map[string]netip.AddrPort {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	mine := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if inode, ok := strings.CutPrefix(link, "socket:["); err == nil && ok {
			mine[strings.TrimSuffix(inode, "]")] = true
		}
	}
	out := map[string]netip.AddrPort{}
	for _, table := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		b, err := os.ReadFile(table)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.Lines(string(b)) {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" || !mine[f[9]] { // 0A: TCP_LISTEN
				continue
			}
			ap, err := procAddr(f[1])
			if err != nil {
				t.Fatalf("%s: %v", table, err)
			}
			out[f[9]] = ap
		}
	}
	return out
}

// procAddr parses /proc/net/tcp's ADDR:PORT, the address in 32-bit words
// of host byte order (little-endian here), the port in big-endian hex.
func procAddr(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	raw, err := hex.DecodeString(a)
	if !ok || err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	for i := 0; i < len(raw); i += 4 {
		slices.Reverse(raw[i : i+4])
	}
	var port uint16
	if _, err := fmt.Sscanf(p, "%X", &port); err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port %q", s)
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr.Unmap(), port), nil
}

// diff is what after has that before had not.
func diff(after, before map[string]netip.AddrPort) []netip.AddrPort {
	var out []netip.AddrPort
	for inode, ap := range after {
		if _, ok := before[inode]; !ok {
			out = append(out, ap)
		}
	}
	slices.SortFunc(out, netip.AddrPort.Compare)
	return out
}

func hasIPv6Loopback() bool {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// The metrics listener serves metricsMaxConns connections at once: the
// next waits until one goes, so idle connections cannot take every file
// descriptor.
func TestServeMetricsConnectionLimit(t *testing.T) {
	stop, err := serveMetrics(t.Context(), "127.0.0.1:0", newSelfReport("gateway", time.Now()).report, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	var addr string
	for _, ap := range diff(listeningSockets(t), nil) {
		if ap.Addr() == netip.MustParseAddr("127.0.0.1") {
			addr = ap.String()
		}
	}
	// Each held connection has been served once, so the server holds it.
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	get := func(c net.Conn) error {
		c.SetDeadline(time.Now().Add(500 * time.Millisecond))
		if _, err := io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	}
	for range metricsMaxConns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		if err := get(c); err != nil {
			t.Fatalf("connection %d: %v", len(held), err)
		}
	}
	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	if err := get(extra); err == nil {
		t.Fatalf("connection %d was served beside %d held ones", metricsMaxConns+1, metricsMaxConns)
	}
	// The waiting one is served first once a held one goes; it gives up.
	extra.Close()
	held[0].Close()
	again, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if err := get(again); err != nil {
		t.Errorf("with a held connection gone, a new one is not served: %v", err)
	}
}
