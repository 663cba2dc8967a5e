package main

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/proxy"
	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/stack"
)

func keyFiles(t *testing.T, names ...string) []string {
	t.Helper()
	dir := t.TempDir()
	var out []string
	for _, n := range names {
		p := filepath.Join(dir, n)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func TestParseConnect(t *testing.T) {
	k := keyFiles(t, "k1", "k2")
	// Flags may come before and after the destination, as with ssh.
	c, err := parseConnect([]string{"-p", "2222", "-i", k[0], "-o", "Tunnel=ethernet", "gw.example",
		"-i", k[1], "-w", "0:any", "--route", "198.18.2.0/24", "--route", "2001:2:0:9::/64", "--address", "198.18.3.2/24",
		"--via", "198.18.3.1", "--via", "2001:2:0:3::1"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.ssh.Destination != "gw.example" || c.ssh.Port != 2222 || !slices.Equal(c.ssh.Identities, k) {
		t.Fatalf("ssh options: %+v", c.ssh)
	}
	if c.ssh.Opts[0] != "TunnelDevice=0:any" || c.ssh.Opts[1] != "Tunnel=ethernet" {
		t.Fatalf("-w must come first among -o so it beats the files: %q", c.ssh.Opts)
	}
	if len(c.routes) != 2 || len(c.addrs) != 1 || len(c.via) != 2 || c.backend != "kernel" {
		t.Fatalf("tunnel flags: %+v", c)
	}
}

// ssh's getopt forms: glued values, clusters, and the flags that stand
// for options, in command-line order.
func TestParseConnectSSHForms(t *testing.T) {
	k := keyFiles(t, "id")
	c, err := parseConnect([]string{"-NTf", "-vv", "-p2222", "-wany:0", "-oServerAliveInterval=5", "-i" + k[0],
		"-l", "alice", "-o", "User=bob", "-4", "-qN", "-J", "jump", "-mtu", "1400", "--route", "default", "gw"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.ssh.Port != 2222 || !c.background || c.level.Level != slog.LevelDebug || c.mtu != 1400 || c.ssh.Jump != "jump" {
		t.Fatalf("parsed %+v", c)
	}
	want := []string{"TunnelDevice=any:0", "AddressFamily=inet", "ServerAliveInterval=5", "User=alice", "User=bob"}
	if !slices.Equal(c.ssh.Opts, want) {
		t.Errorf("options %q, want %q (-w and -4 first; -l before the -o given after it)", c.ssh.Opts, want)
	}
	if !slices.Equal(c.ssh.Identities, k) {
		t.Errorf("identities %q", c.ssh.Identities)
	}
	if len(c.routes) != 2 || c.routes[0].Bits() != 0 || c.routes[1].Bits() != 0 || c.routes[0].Addr().Is4() == c.routes[1].Addr().Is4() {
		t.Errorf("--route default = %v, want 0.0.0.0/0 and ::/0", c.routes)
	}
	c, err = parseConnect([]string{"-q", "-A", "-X", "-t", "-e", "none", "gw"}, io.Discard)
	if err != nil || c.level.Level != slog.LevelError {
		t.Fatalf("-q with ignored flags: %v %+v", err, c)
	}
}

// A missing -i file gets ssh's warning, and the connection goes on.
func TestParseConnectMissingIdentity(t *testing.T) {
	var stderr bytes.Buffer
	missing := filepath.Join(t.TempDir(), "nope")
	c, err := parseConnect([]string{"-i", missing, "gw"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if want := "Warning: Identity file " + missing + " not accessible: No such file or directory.\n"; stderr.String() != want {
		t.Errorf("stderr %q, want %q", stderr.String(), want)
	}
	if len(c.ssh.Identities) != 0 {
		t.Errorf("the missing file is still offered: %q", c.ssh.Identities)
	}
}

func TestParseConnectErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "needs a destination"},
		{[]string{"gw", "uptime"}, "runs no command"},
		{[]string{"-w", "0:x", "gw"}, `-w 0:x`},
		{[]string{"--peer", "198.18.3.1", "--peer", "198.18.3.9", "gw"}, "--peer takes one address"},
		{[]string{"--route", "198.18.2.0", "gw"}, `"198.18.2.0" is not a network like 198.18.0.0/15`},
		{[]string{"--address", "x", "gw"}, `"x" is not an address with its prefix length`},
		{[]string{"-p", "abc", "gw"}, `bad port "abc"`},
		{[]string{"-p0", "gw"}, `bad port "0"`},
		{[]string{"--mtu", "70000", "gw"}, `"70000" is not an MTU from 576 to 16380`},
		{[]string{"--log-level", "loud", "gw"}, `"loud" is not a log level: want debug, info, warn or error`},
		{[]string{"-C", "gw"}, "-C: sshvpn does not compress"},
		{[]string{"-R", "8080:x:80", "gw"}, "-R: sshvpn forwards no remote ports"},
		{[]string{"--backend", "netstack", "gw"}, "give -D, --http-proxy or -L"},
		{[]string{"--backend", "netstack", "-D1080", "-w", "7:any", "gw"}, "-w 7:any names a local device"},
		{[]string{"-D1080", "--route", "198.18.2.0/24", "gw"}, "--route, --via, --peer, --dhcp and --dns-global set up a local device"},
		{[]string{"--socks-auth", "f", "-L1:h:2", "gw"}, "--socks-auth protects the proxies"},
		{[]string{"--backend", "rootless", "gw"}, `unknown backend "rootless" (want netstack or kernel)`},
		{[]string{"-D", "host:port:x", "gw"}, "-D"},
		{[]string{"-z", "gw"}, "unknown option -z"},
		{[]string{"--nope", "gw"}, "unknown flag --nope (sshvpn connect -h lists the flags)"},
		{[]string{"gw", "-p"}, "needs an argument"},
		{[]string{"-4", "-6", "gw"}, "-4 and -6 together"},
		{[]string{"--address", "198.18.3.2/24", "--address", "198.18.3.2/24", "gw"}, "--address 198.18.3.2/24 given twice"},
		{[]string{"gw", "uptime", "now"}, "runs no command, got: uptime now"},
		{[]string{"--via", "198.18.3.1", "--via", "198.18.3.9", "gw"}, "--via 198.18.3.9: one next hop per family"},
		{[]string{"--dhcp", "--address", "198.18.3.2/24", "gw"}, "--dhcp and an IPv4 --address: give one"},
	} {
		var stderr bytes.Buffer
		_, err := parseConnect(tt.args, &stderr)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want %q", tt.args, err, tt.want)
			continue
		}
		// Printed once, by main: nothing here, no usage, no Go internals.
		if stderr.Len() > 0 {
			t.Errorf("%q: parse printed %q", tt.args, stderr.String())
		}
		for _, internal := range []string{"netip.", "slog:", "parse error", "strconv."} {
			if strings.Contains(err.Error(), internal) {
				t.Errorf("%q: %v shows Go internals", tt.args, err)
			}
		}
	}
}

func TestCheckMTU(t *testing.T) {
	if err := checkMTU(16380, relay.PointToPoint); err != nil {
		t.Error(err)
	}
	if err := checkMTU(16380, relay.Ethernet); err == nil || !strings.Contains(err.Error(), "use --mtu 16362 or less") {
		t.Errorf("ethernet 16380: %v", err)
	}
}

// The backend follows ssh's reading of the flags: proxies without -w need
// no device; -w asks for one.
func TestConnectBackendChoice(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want backend
	}{
		{[]string{"gw"}, backendKernel},
		{[]string{"-D1080", "gw"}, backendNetstack},
		{[]string{"-L", "8080:h:80", "gw"}, backendNetstack},
		{[]string{"--http-proxy", "3128", "gw"}, backendNetstack},
		{[]string{"-D1080", "-w", "0:any", "gw"}, backendKernel},
		{[]string{"--backend", "netstack", "-D1080", "-w", "any:5", "gw"}, backendNetstack},
		{[]string{"--backend", "kernel", "-D1080", "gw"}, backendKernel},
	} {
		c, err := parseConnect(tt.args, io.Discard)
		if err != nil || c.backend != tt.want {
			t.Errorf("%q: backend %v, %v; want %s", tt.args, c, err, tt.want)
		}
	}
}

// --transport: the three names, auto by default, and only with a device.
func TestParseConnectTransport(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		want    transport
		wantErr string
	}{
		{args: []string{"gw"}, want: transportAuto},
		{args: []string{"--transport", "flow", "gw"}, want: transportFlow},
		{args: []string{"--transport=packet", "gw"}, want: transportPacket},
		{args: []string{"--transport", "auto", "-w", "any:0", "-D", "1080", "gw"}, want: transportAuto},
		{args: []string{"--transport", "tcp", "gw"}, wantErr: `unknown transport "tcp"`},
		{args: []string{"--transport", "flow", "-D", "1080", "gw"}, wantErr: "--transport applies to the tunnel's device"},
	} {
		c, err := parseConnect(tc.args, io.Discard)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: err %v, want %q", tc.args, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case c.transport != tc.want || c.transport.terminates() != (tc.want == transportFlow):
			t.Errorf("%q: transport %q, want %q", tc.args, c.transport, tc.want)
		}
	}
}

// A direct-tcpip refusal, as flowError words it, in the terminator's terms.
func TestDeviceFlowError(t *testing.T) {
	for _, tc := range []struct {
		oe   *ssh.OpenChannelError
		want error
	}{
		{&ssh.OpenChannelError{Reason: ssh.Prohibited, Message: "port forwarding refused"}, stack.ErrFlowProhibited},
		{&ssh.OpenChannelError{Reason: ssh.ConnectionFailed, Message: "Connection refused"}, stack.ErrFlowRefused},
		{&ssh.OpenChannelError{Reason: ssh.ConnectionFailed, Message: "Connection timed out"}, proxy.ErrTimeout},
	} {
		err := deviceFlowError(flowError("198.18.2.2:80", tc.oe))
		if !errors.Is(err, tc.want) {
			t.Errorf("%v: %v, want %v", tc.oe, err, tc.want)
		}
		for _, other := range []error{stack.ErrFlowProhibited, stack.ErrFlowRefused} {
			if other != tc.want && errors.Is(err, other) {
				t.Errorf("%v: %v is also %v", tc.oe, err, other)
			}
		}
	}
}
