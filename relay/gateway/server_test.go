package gateway_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/gateway"
	"github.com/sshvpn/sshvpn/relay/gateway/gatewaytest"
	"github.com/sshvpn/sshvpn/relay/relaytest"
	"github.com/sshvpn/sshvpn/relay/wire"
)

func newSigner(t *testing.T) ssh.Signer { return gatewaytest.NewSigner(t) }

func startGateway(t *testing.T, permit gateway.PermitTunnel, keyOptions string) *gatewaytest.Gateway {
	return gatewaytest.Start(t, gatewaytest.Options{Permit: permit, KeyOptions: keyOptions})
}

func openTunnel(c *ssh.Client, mode relay.Mode, unit uint32) (ssh.Channel, error) {
	ch, reqs, err := c.OpenChannel(wire.ChannelType, wire.OpenRequest{Mode: mode, Unit: unit}.Marshal())
	if err != nil {
		return nil, err
	}
	go ssh.DiscardRequests(reqs)
	return ch, nil
}

func withAF(af uint32, pkt []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, af), pkt...)
}

func TestServerCarriesPacketsBothWays(t *testing.T) {
	g := startGateway(t, gateway.PermitYes, "")
	ch, err := openTunnel(g.Dial(t), relay.PointToPoint, relay.AnyUnit)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// Several messages written back to back reach the device one by one,
	// with the address family stripped, whatever x/crypto queued together.
	var sent [][]byte
	for i := range 20 {
		p := relaytest.IPv4(strings.Repeat("x", i*37))
		sent = append(sent, p)
		if _, err := ch.Write(withAF(2, p)); err != nil {
			t.Fatal(err)
		}
	}
	dev := g.Devs()[0]
	for i, want := range sent {
		got, err := dev.Recv(ctx)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("packet %d: got %x, want %x", i, got, want)
		}
	}

	// The device's packets reach the client with the OpenBSD family word.
	p := relaytest.IPv4("reply")
	if err := dev.Inject(p); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	n, err := ch.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if want := withAF(2, p); !bytes.Equal(buf[:n], want) {
		t.Fatalf("client got %x, want %x", buf[:n], want)
	}
}

func TestServerDropsBadFramesAndGoesOn(t *testing.T) {
	var log relaytest.Buffer
	g := gatewaytest.Start(t, gatewaytest.Options{Log: &log})
	ch, err := openTunnel(g.Dial(t), relay.PointToPoint, relay.AnyUnit)
	if err != nil {
		t.Fatal(err)
	}
	bad := [][]byte{
		{1, 2},                                // shorter than the family word
		withAF(24, relaytest.IPv4("v4 as 6")), // wrong family
		withAF(2, relaytest.IPv4("cut"))[:22], // truncated
		withAF(7, relaytest.IPv4("af 7")),     // unknown family
	}
	for _, m := range bad {
		if _, err := ch.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	good := relaytest.IPv4("still here")
	if _, err := ch.Write(withAF(2, good)); err != nil {
		t.Fatal(err)
	}
	dev := g.Devs()[0]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := dev.Recv(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, good) {
		t.Fatalf("after bad frames got %x, want %x", got, good)
	}
	// Each bad frame is counted by reason, in the tunnel's last words.
	ch.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(log.String(), "tunnel down") {
		if time.Now().After(deadline) {
			t.Fatalf("no tunnel down in the log:\n%s", log.String())
		}
		time.Sleep(time.Millisecond)
	}
	if want := "in.packets=1 in.bytes=30 in.drops.family=2 in.drops.truncated=2"; !strings.Contains(log.String(), want) {
		t.Errorf("the log does not say %s:\n%s", want, log.String())
	}
}

func TestServerPolicy(t *testing.T) {
	tests := []struct {
		name    string
		permit  gateway.PermitTunnel
		options string
		mode    relay.Mode
		unit    uint32
		refuse  string // in the open failure text; empty: accepted
		gotUnit uint32
	}{
		{"yes-l3", gateway.PermitYes, "", relay.PointToPoint, relay.AnyUnit, "", relay.AnyUnit},
		{"yes-l2-unit", gateway.PermitYes, "", relay.Ethernet, 4, "", 4},
		{"no", gateway.PermitNo, "", relay.PointToPoint, relay.AnyUnit, "--permit-tunnel no", 0},
		{"p2p-only", gateway.PermitPointToPoint, "", relay.Ethernet, relay.AnyUnit, "ethernet tunnel refused", 0},
		{"ethernet-only", gateway.PermitEthernet, "", relay.PointToPoint, relay.AnyUnit, "point-to-point tunnel refused", 0},
		{"forced-any-becomes-5", gateway.PermitYes, `tunnel="5"`, relay.PointToPoint, relay.AnyUnit, "", 5},
		{"forced-same", gateway.PermitYes, `tunnel="5"`, relay.PointToPoint, 5, "", 5},
		{"forced-other", gateway.PermitYes, `tunnel="5"`, relay.PointToPoint, 3, `forces tunnel="5" but the client asked for unit 3`, 0},
		{"forced-any-only", gateway.PermitYes, `tunnel="any"`, relay.PointToPoint, 2, `forces tunnel="any"`, 0},
		{"restrict", gateway.PermitYes, `restrict`, relay.PointToPoint, relay.AnyUnit, "has the restrict option", 0},
		{"bad-mode", gateway.PermitYes, "", relay.Mode(9), relay.AnyUnit, "unknown tunnel mode", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := startGateway(t, tt.permit, tt.options)
			_, err := openTunnel(g.Dial(t), tt.mode, tt.unit)
			if tt.refuse == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				req := g.Reqs()[0]
				if req.Unit != tt.gotUnit || req.Mode != tt.mode {
					t.Fatalf("opened mode %v unit %d, want %v %d", req.Mode, req.Unit, tt.mode, tt.gotUnit)
				}
				return
			}
			var oe *ssh.OpenChannelError
			if !errors.As(err, &oe) {
				t.Fatalf("want an open failure, got %v", err)
			}
			if oe.Reason != ssh.Prohibited || !strings.Contains(oe.Message, tt.refuse) {
				t.Fatalf("refusal %v %q, want administratively prohibited and %q", oe.Reason, oe.Message, tt.refuse)
			}
		})
	}
}

func TestServerFromOption(t *testing.T) {
	for _, tt := range []struct {
		from string
		ok   bool
	}{
		{`from="127.0.0.1"`, true},
		{`from="127.0.0.0/8,!198.18.0.1"`, true},
		{`from="127.0.0.*"`, true},
		{`from="198.18.0.0/15"`, false},
		{`from="*,!127.0.0.1"`, false},
	} {
		t.Run(tt.from, func(t *testing.T) {
			g := startGateway(t, gateway.PermitYes, tt.from)
			c, err := ssh.Dial("tcp", g.Addr, &ssh.ClientConfig{
				User: "test", Auth: []ssh.AuthMethod{ssh.PublicKeys(g.Client)},
				HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second,
			})
			if c != nil {
				c.Close()
			}
			if (err == nil) != tt.ok {
				t.Fatalf("login err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestServerSessionShowsStatusAndStaysOpen(t *testing.T) {
	g := startGateway(t, gateway.PermitYes, "")
	c := g.Dial(t)
	if _, err := openTunnel(c, relay.PointToPoint, relay.AnyUnit); err != nil {
		t.Fatal(err)
	}
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	out, err := sess.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := out.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if text := string(buf[:n]); !strings.Contains(text, "tunnel up") || !strings.Contains(text, "runs no command") {
		t.Fatalf("status text: %q", text)
	}
	done := make(chan error, 1)
	go func() { _, err := out.Read(buf); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("session ended by itself: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	sess.Close()
	if err := <-done; err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("after close: %v", err)
	}
}

func TestLoadAuthorizedKeysErrorsNameTheLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "authorized_keys")
	good := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(newSigner(t).PublicKey())))
	for _, tt := range []struct{ content, want string }{
		{good + "\nssh-ed25519 AAAAnot-base64\n", path + ":2: not a public key line"},
		{"\n\n" + `tunnel="x" ` + good + "\n", path + `:3: option tunnel="x"`},
		{`tunnel=5 ` + good + "\n", path + ":1: option tunnel: value must be in double quotes"},
	} {
		if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := gateway.LoadAuthorizedKeys(path, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("error %v, want it to contain %q", err, tt.want)
		}
	}
	// A missing file starts empty and is picked up once it appears.
	missing := filepath.Join(t.TempDir(), "authorized_keys")
	keys, err := gateway.LoadAuthorizedKeys(missing, nil)
	if err != nil || keys.Len() != 0 {
		t.Fatalf("missing file: %v, %d keys", err, keys.Len())
	}
	signer := newSigner(t)
	if _, err := keys.Lookup(signer.PublicKey(), "root", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}); err == nil || !strings.Contains(err.Error(), "missing or empty") {
		t.Fatalf("lookup in a missing file: %v", err)
	}
	os.WriteFile(missing, ssh.MarshalAuthorizedKey(signer.PublicKey()), 0o600)
	if _, err := keys.Lookup(signer.PublicKey(), "root", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
		t.Fatalf("the key added after start was not found: %v", err)
	}
}

func TestHostKeyIsCreatedPrivateAndReused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "host_key")
	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, nil))
	k1, err := gateway.LoadOrCreateHostKey(path, log)
	if err != nil {
		t.Fatal(err)
	}
	// Generating it is said, with where and what a user compares.
	if fp := ssh.FingerprintSHA256(k1.PublicKey()); !strings.Contains(logged.String(), "host key generated") ||
		!strings.Contains(logged.String(), "path="+path) || !strings.Contains(logged.String(), "fingerprint="+fp) {
		t.Errorf("log %q: want the generated key's path and fingerprint %s", logged.String(), fp)
	}
	logged.Reset()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("host key mode %v, want 0600", fi.Mode().Perm())
	}
	k2, err := gateway.LoadOrCreateHostKey(path, log)
	if err != nil {
		t.Fatal(err)
	}
	if logged.Len() != 0 {
		t.Errorf("loading the key again logged %q: only a new key is news", logged.String())
	}
	if !bytes.Equal(k1.PublicKey().Marshal(), k2.PublicKey().Marshal()) {
		t.Fatal("a second start made a new host key")
	}
}

func TestAuthorizedKeysExample(t *testing.T) {
	const path = "../../testdata/authorized_keys.example"
	keys, err := gateway.LoadAuthorizedKeys(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	var pubs []ssh.PublicKey
	for rest := data; len(rest) > 0; {
		k, _, _, r, err := ssh.ParseAuthorizedKey(rest)
		if err != nil {
			break
		}
		pubs, rest = append(pubs, k), r
	}
	if len(pubs) != 3 || keys.Len() != 3 {
		t.Fatalf("%d keys parsed, %d loaded; want 3", len(pubs), keys.Len())
	}
	from := func(ip string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: 1} }
	if o, err := keys.Lookup(pubs[0], "root", from("127.0.0.1")); err != nil || o.ForceUnit != nil || o.Restrict {
		t.Errorf("plain key: %+v %v", o, err)
	}
	if o, err := keys.Lookup(pubs[1], "root", from("198.18.0.5")); err != nil || o.ForceUnit == nil || *o.ForceUnit != 5 {
		t.Errorf("tunnel=5 key: %+v %v", o, err)
	}
	if _, err := keys.Lookup(pubs[1], "root", from("198.18.9.9")); err == nil || !strings.Contains(err.Error(), "not allowed from") {
		t.Errorf("negated from= address let in: %v", err)
	}
	if o, err := keys.Lookup(pubs[2], "root", from("127.0.0.1")); err != nil || !o.Restrict || !strings.HasSuffix(o.Source, ":11") {
		t.Errorf("restrict key: %+v %v", o, err)
	}
}

// A client may close its tunnel and open another on the same connection,
// and may not hold more than the gateway's limit at once.
func TestServerReopenAndChannelLimit(t *testing.T) {
	g := gatewaytest.Start(t, gatewaytest.Options{Limits: gateway.Limits{MaxTunnelsPerKey: 100}})
	c := g.Dial(t)
	for i := range 3 {
		ch, err := openTunnel(c, relay.PointToPoint, relay.AnyUnit)
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		ch.Close()
	}
	// The three closed ones give their slots back once torn down.
	deadline := time.Now().Add(5 * time.Second)
	for g.Server.ChannelsInUse() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d channels still counted after the client closed them all", g.Server.ChannelsInUse())
		}
		time.Sleep(time.Millisecond)
	}
	var open []ssh.Channel
	for {
		ch, err := openTunnel(c, relay.PointToPoint, relay.AnyUnit)
		if err != nil {
			var oe *ssh.OpenChannelError
			if !errors.As(err, &oe) || oe.Reason != ssh.ResourceShortage || !strings.Contains(oe.Message, "too many channels") {
				t.Fatalf("refusal: %v", err)
			}
			break
		}
		open = append(open, ch)
		if len(open) > 100 {
			t.Fatal("no limit on tunnels per connection")
		}
	}
	if len(open) != 10 {
		t.Errorf("held %d tunnels, want the limit of 10", len(open))
	}
	// The gateway still serves new connections.
	if _, err := openTunnel(g.Dial(t), relay.PointToPoint, relay.AnyUnit); err != nil {
		t.Fatalf("a second client was refused: %v", err)
	}
}

// authorized_keys as sshd reads it: option quoting, expiry, duplicate key
// lines, and lines skipped rather than fatal once the gateway runs.
func TestAuthorizedKeysLikeSSHD(t *testing.T) {
	signer := newSigner(t)
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	from := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	path := filepath.Join(t.TempDir(), "authorized_keys")
	load := func(content string) (*gateway.AuthorizedKeys, error) {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return gateway.LoadAuthorizedKeys(path, nil)
	}

	// Options sshvpn does not act on are left alone, whatever they hold.
	keys, err := load(`command="grep -E '\d+' \"x\"",no-pty ` + line + "\n")
	if err != nil {
		t.Fatalf("a file sshd takes was refused: %v", err)
	}
	if _, err := keys.Lookup(signer.PublicKey(), "root", from); err != nil {
		t.Fatal(err)
	}
	if _, err := load(`tunnel='3' ` + line + "\n"); err == nil || !strings.Contains(err.Error(), "double quotes") {
		t.Errorf("single-quoted tunnel= accepted: %v", err)
	}
	// A CA's line lets its certificates in, never the CA key itself.
	keys, err = load(`cert-authority ` + line + "\n")
	if err != nil {
		t.Fatalf("a cert-authority line made the file fatal: %v", err)
	}
	if _, err := keys.Lookup(signer.PublicKey(), "root", from); err == nil {
		t.Error("a CA key logged in as a plain key")
	}

	// An expired key is refused; the same key on a later line still counts.
	keys, err = load(`expiry-time="20200101Z" ` + line + "\n" + `from="198.18.0.0/15" ` + line + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Lookup(signer.PublicKey(), "root", from); err == nil {
		t.Error("expired key accepted")
	}
	os.WriteFile(path, []byte(`expiry-time="20200101Z" `+line+"\n"+`tunnel="2" `+line+"\n"), 0o600)
	o, err := keys.Lookup(signer.PublicKey(), "root", from)
	if err != nil || o.ForceUnit == nil || *o.ForceUnit != 2 {
		t.Errorf("the second line for the same key was not used: %+v %v", o, err)
	}

	// Once running, a bad line is skipped and the good ones still work.
	os.WriteFile(path, []byte("garbage here\n"+line+"\n"), 0o600)
	if _, err := keys.Lookup(signer.PublicKey(), "root", from); err != nil {
		t.Errorf("a bad line locked the good key out: %v", err)
	}
	// A key removed from the file is refused at the next login.
	os.WriteFile(path, []byte("# nobody\n"), 0o600)
	if _, err := keys.Lookup(signer.PublicKey(), "root", from); err == nil {
		t.Error("a removed key still logs in")
	}
}

// An sshvpn client learns its tunnel's configuration; a stock client is
// sent nothing it does not know.
func TestServerSendsTunnelConfigToSSHVPNClients(t *testing.T) {
	g := startGateway(t, gateway.PermitYes, "")
	for _, version := range []string{"SSH-2.0-sshvpn", "SSH-2.0-OpenSSH_9.2p1"} {
		c, err := ssh.Dial("tcp", g.Addr, g.ClientConfig(version))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, reqs, err := c.OpenChannel(wire.ChannelType, wire.OpenRequest{Mode: relay.PointToPoint, Unit: relay.AnyUnit}.Marshal())
		if err != nil {
			t.Fatal(err)
		}
		var got *relay.TunnelConfig
		select {
		case r := <-reqs:
			if r.Type != wire.TunnelConfigRequest {
				t.Fatalf("%s was sent a %q request", version, r.Type)
			}
			cfg, err := wire.ParseTunnelConfig(r.Payload)
			if err != nil {
				t.Fatal(err)
			}
			got = &cfg
		case <-time.After(500 * time.Millisecond):
		}
		if version != "SSH-2.0-sshvpn" {
			if got != nil {
				t.Errorf("%s was sent a tunnel config", version)
			}
			continue
		}
		if got == nil || len(got.Addresses) != 1 || got.Addresses[0].String() != "198.18.3.2/24" ||
			got.Gateways[0].String() != "198.18.3.1" || got.Routes[0].String() != "198.18.2.0/24" || got.MTU != 1500 {
			t.Errorf("tunnel config: %+v", got)
		}
	}
}

// The gateway measures the SSH path's round trip for every tunnel and tells
// a backend that sizes its queue by it (relay.PathTuner), beside the tunnel
// (TestServerFramedTunnelDoesNotWaitForTheRTT); a stock client answers the
// unknown global request only with a failure, which still times it.
func TestServerTellsTunnelsThePathRTT(t *testing.T) {
	g := startGateway(t, gateway.PermitYes, "")
	opens := []struct {
		version, kind string
		extra         []byte
	}{
		{"SSH-2.0-OpenSSH_9.2p1", wire.ChannelType, wire.OpenRequest{Mode: relay.PointToPoint, Unit: relay.AnyUnit}.Marshal()},
		{"SSH-2.0-sshvpn", wire.StreamChannelType, wire.StreamOpen{OpenRequest: wire.OpenRequest{Mode: relay.PointToPoint, Unit: relay.AnyUnit}}.Marshal()},
	}
	for i, o := range opens {
		c, err := ssh.Dial("tcp", g.Addr, g.ClientConfig(o.version))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ch, reqs, err := c.OpenChannel(o.kind, o.extra)
		if err != nil {
			t.Fatalf("%s: open %s: %v", o.version, o.kind, err)
		}
		defer ch.Close()
		go ssh.DiscardRequests(reqs)
		deadline := time.Now().Add(5 * time.Second)
		for {
			rtts := g.PathRTTs()
			if len(rtts) > i && rtts[i] > 0 {
				if rtts[i] > time.Second {
					t.Errorf("%s: a round trip of %v on loopback", o.version, rtts[i])
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s (%s): the tunnel was never told the path's round trip: %v", o.version, o.kind, rtts)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// A framed tunnel comes up without waiting for the round trip the gateway
// measures to size its window: a client that never answers the
// measurement's global request still gets its configuration at once, so
// the measurement costs the tunnel's first packet no round trip.
func TestServerFramedTunnelDoesNotWaitForTheRTT(t *testing.T) {
	g := startGateway(t, gateway.PermitYes, "")
	nc, err := net.Dial("tcp", g.Addr)
	if err != nil {
		t.Fatal(err)
	}
	conn, chans, reqs, err := ssh.NewClientConn(nc, g.Addr, g.ClientConfig("SSH-2.0-sshvpn"))
	if err != nil {
		t.Fatal(err)
	}
	_ = reqs // never read: keepalive@openssh.com goes unanswered
	c := ssh.NewClient(conn, chans, nil)
	defer c.Close()
	ch, creqs, err := c.OpenChannel(wire.StreamChannelType, wire.StreamOpen{OpenRequest: wire.OpenRequest{Mode: relay.PointToPoint, Unit: relay.AnyUnit}}.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	select {
	case r := <-creqs:
		if r.Type != wire.TunnelConfigRequest {
			t.Fatalf("sent a %q request, want %s", r.Type, wire.TunnelConfigRequest)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no tunnel configuration while the round trip is unmeasured: the tunnel waits for it")
	}
}
