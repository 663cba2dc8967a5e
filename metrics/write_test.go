package metrics

import (
	"bytes"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sshvpn/sshvpn/status"
)

var update = flag.Bool("update", false, "rewrite testdata's golden files from the output")

// testBuild stands for the binary's build info, which differs from one
// machine and checkout to the next.
var testBuild = build{version: "v1.2.3", revision: "0123456789abcdef", goVersion: "go1.26.8"}

var started = time.Date(2026, 12, 8, 1, 2, 3, 500_000_000, time.UTC)

// fullGateway fills every field of a gateway's Report.
func fullGateway() *status.Report {
	tunnel := func(mode, channel string, in, out uint64) status.Tunnel {
		return status.Tunnel{
			Channel: channel, Mode: mode, Backend: "netstack", Device: "netstack",
			Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.0.2/24")},
			Since:     started, LastReceived: started.Add(time.Minute),
			In:     status.Counters{Packets: in, Bytes: in * 1000, Drops: map[string]uint64{"malformed": 1}},
			Out:    status.Counters{Packets: out, Bytes: out * 1000},
			Flows:  &status.Usage{Used: 3, Limit: 1024, Refused: 2},
			Memory: &status.Usage{Used: 65536, Limit: 1 << 24},
		}
	}
	return &status.Report{
		Schema: status.Schema, Role: "gateway", PID: 4242, Version: "v1.2.3", Started: started,
		Gateway: &status.Gateway{
			Listen: ":2222", HostKey: "SHA256:abc", Backend: "netstack", Handshaking: 2,
			Connections: []status.Connection{
				{
					User: "alice", Key: "SHA256:a", Remote: "198.18.0.9:50000", PeerVersion: "SSH-2.0-OpenSSH_9.2p1",
					Since: started, RTT: status.Duration(12 * time.Millisecond),
					Forwards: status.Usage{Used: 5, Limit: 1024},
					Tunnels: []status.Tunnel{
						tunnel("point-to-point", "tun@openssh.com", 10, 20),
						tunnel("ethernet", "tun@openssh.com", 1, 2),
					},
				},
				{
					User: "bob", Key: "SHA256:b", Remote: "[2001:2::9]:50001", PeerVersion: "SSH-2.0-sshvpn",
					Since: started, Forwards: status.Usage{Used: 1, Limit: 1024},
					Tunnels: []status.Tunnel{tunnel("point-to-point", "tun-stream@sshvpn", 100, 200)},
				},
			},
			Totals: status.Traffic{
				In:  status.Counters{Packets: 1000, Bytes: 1_400_000, Drops: map[string]uint64{"malformed": 3, "too_big": 1}},
				Out: status.Counters{Packets: 2000, Bytes: 2_800_000, Drops: map[string]uint64{"queue_full": 7}},
			},
			Refused:      map[string]uint64{"connections_per_key": 4, "forwards_per_connection": 9},
			AuthFailures: map[string]uint64{"unknown_key": 12, "handshake": 3},
			DNS: &status.DNS{
				Queries: 500, CacheHits: 300, CacheEntries: 40, CacheBytes: 8192,
				Refused: 2, Malformed: 1, Dropped: 5, UpstreamFailures: 6,
			},
		},
	}
}

// fullClient fills every field of a rootless client's Report.
func fullClient() *status.Report {
	return &status.Report{
		Schema: status.Schema, Role: "client", PID: 4343, Version: "v1.2.3", Started: started,
		Client: &status.Client{
			State: "up", Server: "alice@gw:2222", Since: started, Reconnects: 3,
			PeerVersion: "SSH-2.0-sshvpn", RTT: status.Duration(25 * time.Millisecond),
			Tunnel: &status.Tunnel{
				Channel: "tun-stream@sshvpn", Mode: "point-to-point", Backend: "netstack", Device: "netstack",
				Since: started, Flows: &status.Usage{Used: 7}, Memory: &status.Usage{Used: 4096},
			},
			Routes: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")},
			Totals: status.Traffic{
				In:  status.Counters{Packets: 10, Bytes: 10_000},
				Out: status.Counters{Packets: 20, Bytes: 20_000, Drops: map[string]uint64{"closed": 1}},
			},
			Proxies: []status.Proxy{
				{Kind: "socks", Listen: "127.0.0.1:1080", Conns: status.Usage{Used: 2, Limit: 512, Refused: 1}},
				{Kind: "socks", Listen: "[::1]:1080", Conns: status.Usage{Used: 1, Limit: 512}},
				{Kind: "forward", Listen: "127.0.0.1:8080", Target: "intranet:80", Conns: status.Usage{Used: 4, Limit: 512, Refused: 5}},
			},
		},
	}
}

// parse holds out to the ecosystem's own parser and linter and to the
// format's rules the parser lets pass, and returns the families.
func parse(t *testing.T, out []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("the text parser refuses the output: %v\n%s", err, out)
	}
	problems, err := promlint.New(bytes.NewReader(out)).Lint()
	if err != nil {
		t.Fatalf("promlint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	for name, f := range fams {
		if !strings.HasPrefix(name, "sshvpn_") {
			t.Errorf("%s: want the sshvpn_ prefix", name)
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			if !strings.HasSuffix(name, "_total") {
				t.Errorf("counter %s does not end in _total", name)
			}
		case dto.MetricType_GAUGE:
		default:
			t.Errorf("%s is %s: want every family typed a counter or a gauge", name, f.GetType())
		}
	}
	checkGrouped(t, out)
	return fams
}

// checkGrouped checks what the parser does not: each family's lines are
// together, HELP then TYPE then its samples, and no sample repeats.
func checkGrouped(t *testing.T, out []byte) {
	t.Helper()
	done := map[string]bool{}
	seen := map[string]bool{}
	current := ""
	for line := range strings.Lines(string(out)) {
		line = strings.TrimSuffix(line, "\n")
		if name, ok := strings.CutPrefix(line, "# HELP "); ok {
			name, _, _ = strings.Cut(name, " ")
			if done[name] || name == current {
				t.Errorf("family %s begins twice", name)
			}
			if current != "" {
				done[current] = true
			}
			current = name
			continue
		}
		if strings.HasPrefix(line, "# TYPE "+current+" ") {
			continue
		}
		name, _, _ := strings.Cut(line, " ")
		name, _, _ = strings.Cut(name, "{")
		if name != current {
			t.Errorf("sample %q outside its family (in %s)", line, current)
		}
		series, _, _ := strings.Cut(line, "} ")
		if seen[series] {
			t.Errorf("series %q repeats", series)
		}
		seen[series] = true
	}
}

// value is the sample of fams[name] with the given labels.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no family %s", name)
	}
next:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel())*2 != len(labels) {
			continue
		}
		for i, l := range m.GetLabel() {
			if l.GetName() != labels[2*i] || l.GetValue() != labels[2*i+1] {
				continue next
			}
		}
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("%s%v: no such sample", name, labels)
	return 0
}

func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    *status.Report
	}{
		{"gateway", fullGateway()},
		{"client", fullClient()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := render(tc.r, testBuild)
			parse(t, out)
			golden := filepath.Join("testdata", tc.name+".prom")
			if *update {
				if err := os.WriteFile(golden, out, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test -run TestGolden -update writes it)", err)
			}
			if !bytes.Equal(out, want) {
				t.Errorf("output differs from %s: a metric's name, labels or help changed; names are a contract (go test -update if on purpose)\ngot:\n%s", golden, out)
			}
		})
	}
}

func TestGatewayValues(t *testing.T) {
	fams := parse(t, render(fullGateway(), testBuild))
	for _, c := range []struct {
		want   float64
		name   string
		labels []string
	}{
		{1, "sshvpn_build_info", []string{"version", "v1.2.3", "revision", "0123456789abcdef", "goversion", "go1.26.8"}},
		{1796691723.5, "sshvpn_start_time_seconds", nil},
		{2, "sshvpn_connections", nil},
		{2, "sshvpn_handshaking", nil},
		{1, "sshvpn_tunnels", []string{"backend", "netstack", "channel", "tun@openssh.com", "mode", "ethernet"}},
		{1, "sshvpn_tunnels", []string{"backend", "netstack", "channel", "tun@openssh.com", "mode", "point-to-point"}},
		{1, "sshvpn_tunnels", []string{"backend", "netstack", "channel", "tun-stream@sshvpn", "mode", "point-to-point"}},
		{6, "sshvpn_forwards", nil},
		{9, "sshvpn_flows", nil},
		{3 * 65536, "sshvpn_flow_memory_bytes", nil},
		// Totals, not the sum of the tunnels up: departed ones count.
		{1_400_000, "sshvpn_tunnel_bytes_total", []string{"direction", "in"}},
		{2_800_000, "sshvpn_tunnel_bytes_total", []string{"direction", "out"}},
		{1000, "sshvpn_tunnel_packets_total", []string{"direction", "in"}},
		{2000, "sshvpn_tunnel_packets_total", []string{"direction", "out"}},
		{3, "sshvpn_tunnel_drops_total", []string{"direction", "in", "reason", "malformed"}},
		{1, "sshvpn_tunnel_drops_total", []string{"direction", "in", "reason", "too_big"}},
		{7, "sshvpn_tunnel_drops_total", []string{"direction", "out", "reason", "queue_full"}},
		{4, "sshvpn_limit_refused_total", []string{"limit", "connections_per_key"}},
		{9, "sshvpn_limit_refused_total", []string{"limit", "forwards_per_connection"}},
		{12, "sshvpn_auth_failures_total", []string{"reason", "unknown_key"}},
		{3, "sshvpn_auth_failures_total", []string{"reason", "handshake"}},
		{500, "sshvpn_dns_queries_total", nil},
		{300, "sshvpn_dns_cache_hits_total", nil},
		{40, "sshvpn_dns_cache_entries", nil},
		{8192, "sshvpn_dns_cache_bytes", nil},
		{2, "sshvpn_dns_refused_total", nil},
		{1, "sshvpn_dns_malformed_total", nil},
		{5, "sshvpn_dns_dropped_total", nil},
		{6, "sshvpn_dns_upstream_failures_total", nil},
	} {
		// The parser sorts no labels; ours come in the order written.
		labels := c.labels
		if c.name == "sshvpn_tunnels" {
			labels = []string{"mode", c.labels[5], "channel", c.labels[3], "backend", c.labels[1]}
		}
		if got := value(t, fams, c.name, labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if len(fams["sshvpn_tunnels"].GetMetric()) != 3 {
		t.Errorf("sshvpn_tunnels has %d series, want one per mode, channel and backend: 3", len(fams["sshvpn_tunnels"].GetMetric()))
	}
}

func TestClientValues(t *testing.T) {
	r := fullClient()
	fams := parse(t, render(r, testBuild))
	for _, c := range []struct {
		want   float64
		name   string
		labels []string
	}{
		{1, "sshvpn_client_up", nil},
		{3, "sshvpn_client_reconnects_total", nil},
		{0.025, "sshvpn_client_rtt_seconds", nil},
		{1, "sshvpn_tunnels", []string{"mode", "point-to-point", "channel", "tun-stream@sshvpn", "backend", "netstack"}},
		{7, "sshvpn_flows", nil},
		{4096, "sshvpn_flow_memory_bytes", nil},
		{10_000, "sshvpn_tunnel_bytes_total", []string{"direction", "in"}},
		{20, "sshvpn_tunnel_packets_total", []string{"direction", "out"}},
		{1, "sshvpn_tunnel_drops_total", []string{"direction", "out", "reason", "closed"}},
		{3, "sshvpn_proxy_connections", []string{"kind", "socks"}},
		{4, "sshvpn_proxy_connections", []string{"kind", "forward"}},
		{1, "sshvpn_proxy_refused_total", []string{"kind", "socks"}},
		{5, "sshvpn_proxy_refused_total", []string{"kind", "forward"}},
	} {
		if got := value(t, fams, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	for _, state := range []string{"connecting", "reconnecting", ""} {
		r.Client.State = state
		if got := value(t, parse(t, render(r, testBuild)), "sshvpn_client_up"); got != 0 {
			t.Errorf("state %q: sshvpn_client_up = %v, want 0", state, got)
		}
	}
}

// TestSparse renders Reports with parts missing: each still parses, lints
// and has the families it can have.
func TestSparse(t *testing.T) {
	for _, tc := range []struct {
		name     string
		r        *status.Report
		has, not []string
	}{
		{"nil", nil, []string{"sshvpn_build_info"}, []string{"sshvpn_start_time_seconds", "sshvpn_connections", "sshvpn_client_up"}},
		{"empty", &status.Report{}, []string{"sshvpn_build_info"}, []string{"sshvpn_start_time_seconds", "sshvpn_connections", "sshvpn_client_up"}},
		{"process only", &status.Report{Schema: 1, Role: "gateway", PID: 1, Started: started},
			[]string{"sshvpn_build_info", "sshvpn_start_time_seconds"}, []string{"sshvpn_connections"}},
		{"bare gateway", &status.Report{Gateway: &status.Gateway{Backend: "kernel"}},
			[]string{"sshvpn_connections", "sshvpn_handshaking", "sshvpn_forwards", "sshvpn_tunnel_bytes_total", "sshvpn_tunnel_packets_total"},
			[]string{"sshvpn_flows", "sshvpn_dns_queries_total", "sshvpn_client_up"}},
		{"bare netstack gateway", &status.Report{Gateway: &status.Gateway{Backend: "netstack"}},
			[]string{"sshvpn_connections", "sshvpn_flows", "sshvpn_flow_memory_bytes"}, []string{"sshvpn_dns_queries_total"}},
		{"tunnel without limits", &status.Report{Gateway: &status.Gateway{Backend: "kernel", Connections: []status.Connection{{Tunnels: []status.Tunnel{{Mode: "ethernet"}}}}}},
			[]string{"sshvpn_tunnels"}, []string{"sshvpn_flows"}},
		{"bare client", &status.Report{Client: &status.Client{State: "connecting"}},
			[]string{"sshvpn_client_up", "sshvpn_client_reconnects_total", "sshvpn_tunnel_bytes_total"},
			[]string{"sshvpn_client_rtt_seconds", "sshvpn_tunnels", "sshvpn_proxy_connections", "sshvpn_connections", "sshvpn_flows"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Write(&buf, tc.r); err != nil {
				t.Fatal(err)
			}
			fams := parse(t, buf.Bytes())
			for _, name := range tc.has {
				if _, ok := fams[name]; !ok {
					t.Errorf("no %s in\n%s", name, buf.Bytes())
				}
			}
			for _, name := range tc.not {
				if _, ok := fams[name]; ok {
					t.Errorf("%s without the data for it, in\n%s", name, buf.Bytes())
				}
			}
		})
	}
}

// TestEscaping sends label values and help text with every character the
// format escapes through the parser and expects them back as they were.
func TestEscaping(t *testing.T) {
	odd := []string{`a"b`, `back\slash`, "line\nfeed", `\"` + "\n" + `\n`, `trailing\`, "plain"}
	r := &status.Report{Gateway: &status.Gateway{AuthFailures: map[string]uint64{}}}
	for i, s := range odd {
		r.Gateway.AuthFailures[s] = uint64(i + 1)
	}
	fams := parse(t, render(r, build{version: `v"1\` + "\n", revision: "r", goVersion: "go"}))
	for i, s := range odd {
		if got := value(t, fams, "sshvpn_auth_failures_total", "reason", s); got != float64(i+1) {
			t.Errorf("reason %q = %v, want %d", s, got, i+1)
		}
	}
	if got := value(t, fams, "sshvpn_build_info", "version", `v"1\`+"\n", "revision", "r", "goversion", "go"); got != 1 {
		t.Errorf("build_info = %v", got)
	}

	var tx text
	tx.family("sshvpn_x", gauge, "help with a \\ and a\nnewline and a \"quote\"")
	tx.uint("sshvpn_x", 1)
	f := parse(t, tx.b)["sshvpn_x"]
	if want := "help with a \\ and a\nnewline and a \"quote\""; f.GetHelp() != want {
		t.Errorf("help = %q, want %q", f.GetHelp(), want)
	}
}

// TestBoundedSeries gives the gateway many clients, each with its own user,
// key and address, and expects no more series than one client brings.
func TestBoundedSeries(t *testing.T) {
	series := func(r *status.Report) int {
		n := 0
		for _, f := range parse(t, render(r, testBuild)) {
			n += len(f.GetMetric())
		}
		return n
	}
	one := fullGateway()
	many := fullGateway()
	protos := many.Gateway.Connections
	many.Gateway.Connections = nil
	for i := range 500 {
		proto := protos[i%len(protos)]
		c := proto
		c.User = fmt.Sprintf("user%d", i)
		c.Key = fmt.Sprintf("SHA256:%d", i)
		c.Remote = fmt.Sprintf("198.18.%d.%d:%d", i/250, i%250, 40000+i)
		c.Tunnels = slices.Clone(proto.Tunnels)
		for j := range c.Tunnels {
			c.Tunnels[j].Device = fmt.Sprintf("tun%d", i*2+j)
		}
		many.Gateway.Connections = append(many.Gateway.Connections, c)
	}
	if a, b := series(one), series(many); a != b {
		t.Errorf("500 clients give %d series, 2 give %d: a label follows the clients", b, a)
	}
}

func TestWriteError(t *testing.T) {
	if err := Write(failWriter{}, fullGateway()); err == nil {
		t.Error("Write to a failing writer returned no error")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, os.ErrClosed }

// TestBuildInfo reads the test binary's own build info through Write.
func TestBuildInfo(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, &status.Report{Version: "v9.9.9"}); err != nil {
		t.Fatal(err)
	}
	fams := parse(t, buf.Bytes())
	m := fams["sshvpn_build_info"].GetMetric()
	if len(m) != 1 {
		t.Fatalf("%d sshvpn_build_info samples, want 1", len(m))
	}
	labels := map[string]string{}
	for _, l := range m[0].GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	if labels["version"] != "v9.9.9" || labels["goversion"] != runtime.Version() || labels["revision"] == "" {
		t.Errorf("sshvpn_build_info labels %v: want the Report's version, %s and a revision", labels, runtime.Version())
	}
}
