package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/sshvpn/sshvpn/relay/gateway"
	"github.com/sshvpn/sshvpn/relay/wire"
	"github.com/sshvpn/sshvpn/stack"
)

func TestParseServeDefaults(t *testing.T) {
	c, err := parseServe(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.listen != ":2222" || c.permit != "yes" || c.backend != "netstack" || c.mtu != 0 || c.nat { // mtu 0: the backend's own default
		t.Fatalf("defaults: %+v", c)
	}
	if !strings.HasSuffix(c.hostKey, "sshvpn/ssh_host_ed25519_key") || !strings.HasSuffix(c.authorizedKeys, ".ssh/authorized_keys") {
		t.Fatalf("default paths: %q %q", c.hostKey, c.authorizedKeys)
	}
	if !strings.HasPrefix(c.ciphers, "aes128-gcm@openssh.com,") || strings.Contains(c.ciphers, "chacha20") || strings.Contains(c.ciphers, "ctr") {
		t.Fatalf("AES-GCM must be offered first, and chacha20 and CTR not at all (clients would pick them): %q", c.ciphers)
	}
}

// The netstack limits' flags default to the stack's own defaults, and a
// size reads back as it is written.
func TestParseServeLimits(t *testing.T) {
	c, err := parseServe(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	got, def := c.rootless.limits, stack.DefaultLimits
	if got.TCPInFlight != def.TCPInFlight || got.TCPEstablished != def.TCPEstablished || got.UDPFlows != def.UDPFlows ||
		got.ICMPInFlight != def.ICMPInFlight || got.Memory != def.Memory {
		t.Errorf("flag defaults %+v, want the stack's %+v", got, def)
	}
	c, err = parseServe([]string{"--max-client-memory", "1536K", "--max-udp-flows", "7"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if l := c.rootless.limits; l.Memory != 1536<<10 || l.UDPFlows != 7 {
		t.Errorf("parsed %+v", l)
	}
	if s := (sizeFlag{&c.rootless.limits.Memory}).String(); s != "1536K" {
		t.Errorf("1536 KiB reads back as %q", s)
	}
}

func TestParseServeFlags(t *testing.T) {
	c, err := parseServe([]string{"--backend", "kernel", "--listen", "198.18.0.1:22", "--permit-tunnel", "ethernet",
		"--tun-address", "198.18.3.1/24", "--tun-address", "2001:2::1/64", "--nat", "--mtu", "9000"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("198.18.3.1/24"), netip.MustParsePrefix("2001:2::1/64")}
	if c.listen != "198.18.0.1:22" || c.permit != "ethernet" || !c.nat || c.mtu != 9000 ||
		len(c.tunAddrs) != 2 || c.tunAddrs[0] != want[0] || c.tunAddrs[1] != want[1] {
		t.Fatalf("parsed %+v", c)
	}
}

func TestParseServeErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--permit-tunnel", "maybe"}, "want yes, point-to-point, ethernet or no"},
		{[]string{"--backend", "qemu"}, `unknown backend "qemu"`},
		{[]string{"--tun-address", "198.18.3.1"}, "like 198.18.0.1/24"},
		{[]string{"--mtu", "20000"}, "--mtu 20000: want 576 to 16380"},
		{[]string{"--backend", "kernel", "--nat"}, "--nat needs --tun-address"},
		{[]string{"--nat"}, "--nat is for --backend kernel; this gateway runs --backend netstack"},
		{[]string{"--backend", "kernel", "--subnet", "198.18.3.0/24"}, "--subnet is for --backend netstack"},
		{[]string{"--subnet", "198.18.3.0/31"}, "too small"},
		{[]string{"--allow", "example.com"}, `flag -allow: rule "example.com": "example.com" is not an IP address`},
		{[]string{"--max-client-memory", "12Q"}, "like 256M"},
		{[]string{"--backend", "kernel", "--max-icmp-in-flight", "8"}, "--max-icmp-in-flight is for --backend netstack"},
		{[]string{"--ciphers", "bogus"}, `--ciphers: unknown cipher "bogus"`},
		{[]string{"--ciphers", "aes128-gcm@openssh.com,3des-cbc"}, "insecure"},
		{[]string{"--backend", "kernel", "--mtu", "16380"}, "--mtu 16380: an ethernet tunnel's frames would exceed"},
		{[]string{"extra"}, "serve takes no arguments"},
		{[]string{"--bogus"}, "unknown flag --bogus (sshvpn serve -h lists the flags)"},
	} {
		var stderr bytes.Buffer
		_, err := parseServe(tt.args, &stderr)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: error %v, want %q", tt.args, err, tt.want)
		}
		// main prints the error once; nothing here, no usage.
		if stderr.Len() > 0 {
			t.Errorf("%v: parse printed %q", tt.args, stderr.String())
		}
	}
}

// The rootless gateway carries both modes: yes means both, ethernet
// means ethernet (it used to turn yes into point-to-point and refuse
// ethernet).
func TestParseServeNetstackModes(t *testing.T) {
	for _, p := range []gateway.PermitTunnel{gateway.PermitYes, gateway.PermitEthernet, gateway.PermitPointToPoint} {
		c, err := parseServe([]string{"--permit-tunnel", string(p)}, io.Discard)
		if err != nil || c.permit != p {
			t.Errorf("--permit-tunnel %s: %v, permit %v", p, err, c)
		}
	}
}

// An MTU too large for ethernet frames is fine when only point-to-point
// tunnels are allowed, and on the rootless gateway, whose ethernet
// tunnels take at most what their frames carry.
func TestParseServeMTU(t *testing.T) {
	// The stack may not import relay/wire and writes the figure out.
	if stack.DefaultEthernetMTU != wire.MaxFrame-14-4 {
		t.Errorf("stack.DefaultEthernetMTU %d, serve's ethernet limit %d", stack.DefaultEthernetMTU, wire.MaxFrame-14-4)
	}
	if _, err := parseServe([]string{"--mtu", "16380"}, io.Discard); err != nil {
		t.Errorf("netstack, both modes: %v", err)
	}
	if _, err := parseServe([]string{"--mtu", "16380", "--permit-tunnel", "point-to-point"}, io.Discard); err != nil {
		t.Errorf("netstack, point-to-point only: %v", err)
	}
	if _, err := parseServe([]string{"--backend", "kernel", "--mtu", "16380", "--permit-tunnel", "point-to-point"}, io.Discard); err != nil {
		t.Fatal(err)
	}
}

func TestRunCommands(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"version"}, &out, &errOut); err != nil || !strings.HasPrefix(out.String(), "sshvpn ") {
		t.Fatalf("version: %v %q", err, out.String())
	}
	if err := run(context.Background(), []string{"frobnicate"}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Fatalf("unknown command: %v", err)
	}
	if err := run(context.Background(), nil, &out, &errOut); err == nil || !strings.Contains(errOut.String(), "sshvpn serve") {
		t.Fatalf("no command: %v %q", err, errOut.String())
	}
	out.Reset()
	if err := run(context.Background(), []string{"cleanup", "--state-dir", t.TempDir()}, &out, &errOut); err != nil ||
		!strings.Contains(out.String(), "0 host changes undone") {
		t.Fatalf("cleanup with nothing to do: %v %q", err, out.String())
	}
}

// --bridge and --create-bridge belong to the kernel backend, exclude each
// other and bridge ethernet tunnels only.
func TestParseServeBridge(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--bridge", "br0"}, "--bridge is for --backend kernel; this gateway runs --backend netstack"},
		{[]string{"--create-bridge", "eth0"}, "--create-bridge is for --backend kernel"},
		{[]string{"--backend", "kernel", "--bridge", "br0", "--create-bridge", "eth0"}, "give one"},
		{[]string{"--backend", "kernel", "--bridge", "br0", "--permit-tunnel", "point-to-point"}, "which --permit-tunnel point-to-point refuses"},
	} {
		if _, err := parseServe(c.args, io.Discard); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.args, err, c.want)
		}
	}
	c, err := parseServe([]string{"--backend", "kernel", "--bridge", "br0", "--tun-address", "198.18.3.1/24"}, io.Discard)
	if err != nil || c.bridge != "br0" {
		t.Fatalf("--bridge with --tun-address for point-to-point tunnels: %+v, %v", c, err)
	}
}

// A rootless gateway whose DHCP replies could not carry its --route
// networks refuses to start while it takes ethernet tunnels, rather than
// failing each one as it opens.
func TestServeRefusesUnsendableDHCP(t *testing.T) {
	args := []string{"--resolv-conf", "/dev/null"}
	for i := range 60 {
		args = append(args, "--route", netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i), 0}), 24).String())
	}
	for _, c := range []struct {
		permit string
		fails  bool
	}{{"yes", true}, {"ethernet", true}, {"point-to-point", false}} {
		cfg, err := parseServe(append(args, "--permit-tunnel", c.permit), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		_, stop, err := netstackBackend(cfg, slog.New(slog.DiscardHandler))
		if err == nil {
			stop()
		}
		if (err != nil) != c.fails || err != nil && !strings.Contains(err.Error(), "fewer --route") {
			t.Errorf("--permit-tunnel %s: %v", c.permit, err)
		}
	}
}

// --listen takes a port alone as every address's: sshd's ListenAddress
// has no such form, but a number can mean nothing else here.
func TestParseServeListenPort(t *testing.T) {
	for arg, want := range map[string]string{"2223": ":2223", "198.18.0.1:22": "198.18.0.1:22", "[2001:2::1]:22": "[2001:2::1]:22", ":22": ":22"} {
		c, err := parseServe([]string{"--listen", arg}, io.Discard)
		if err != nil || c.listen != want {
			t.Errorf("--listen %s: %q, %v; want %q", arg, c.listen, err, want)
		}
	}
}

// A --subnet of one family turns the other off: the gateway says which,
// and how to keep it.
func TestServeSaysWhichFamilyIsOff(t *testing.T) {
	for _, c := range []struct {
		subnets []string
		want    []string // nil: no such warning
	}{
		{[]string{"198.18.3.0/24"}, []string{"level=WARN", "tunnels carry no IPv6", "add --subnet " + stack.DefaultSubnet6.String()}},
		{[]string{"2001:2:0:3::/64"}, []string{"level=WARN", "tunnels carry no IPv4", "add --subnet " + stack.DefaultSubnet4.String()}},
		{[]string{"198.18.3.0/24", "2001:2:0:3::/64"}, nil},
		{nil, nil},
	} {
		args := []string{"--resolv-conf", "/dev/null"}
		for _, s := range c.subnets {
			args = append(args, "--subnet", s)
		}
		cfg, err := parseServe(args, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		var log bytes.Buffer
		_, stop, err := netstackBackend(cfg, newLogger(&log, slog.LevelInfo, logText))
		if err != nil {
			t.Fatal(err)
		}
		stop()
		line := ""
		for l := range strings.Lines(log.String()) {
			if strings.Contains(l, "--subnet names") {
				line = l
			}
		}
		if c.want == nil && line != "" {
			t.Errorf("%q: %s", c.subnets, line)
		}
		for _, w := range c.want {
			if !strings.Contains(line, w) {
				t.Errorf("%q: the warning lacks %q: %q", c.subnets, w, line)
			}
		}
	}
}

// A mistyped command or long flag is answered with the nearest one; a name
// near none gets no guess.
func TestSuggestions(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"serv"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), `unknown command "serv": did you mean "serve"?`) {
		t.Errorf("sshvpn serv: %v", err)
	}
	err = run(context.Background(), []string{"frobnicate"}, &out, &errOut)
	if err == nil || strings.Contains(err.Error(), "did you mean") {
		t.Errorf("sshvpn frobnicate: %v", err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--max-tunnel-per-key", "3"}, "unknown flag --max-tunnel-per-key: did you mean --max-tunnels-per-key? (sshvpn serve -h lists the flags)"},
		{[]string{"--authorised-keys", "f"}, "did you mean --authorized-keys?"},
		{[]string{"--permit-tunel", "yes"}, "did you mean --permit-tunnel?"},
		{[]string{"--max-client"}, "did you mean --max-client-memory?"},
		{[]string{"--bogus"}, "unknown flag --bogus (sshvpn serve -h lists the flags)"},
	} {
		if _, err := parseServe(c.args, io.Discard); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("serve %q: %v, want %q", c.args, err, c.want)
		}
	}
	if _, err := parseConnect([]string{"--rout", "198.18.2.0/24", "gw"}, io.Discard); err == nil || !strings.Contains(err.Error(), "did you mean --route?") {
		t.Errorf("connect --rout: %v", err)
	}
}

func TestEditDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"serv", "serve", 1}, {"kitten", "sitting", 3}, {"", "abc", 3}, {"conect", "connect", 1}, {"abc", "cba", 2}} {
		if d := editDistance(c.a, c.b); d != c.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", c.a, c.b, d, c.d)
		}
	}
}
