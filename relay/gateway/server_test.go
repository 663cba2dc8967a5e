package relay_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/relaytest"
)

// testGateway is a relay.Server on loopback whose tunnels end in fake
// devices.
type testGateway struct {
	addr   string
	client ssh.Signer
	mu     sync.Mutex
	devs   []*relaytest.Dev
	reqs   []relay.TunnelRequest
}

func newSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startGateway runs a gateway that accepts the returned client key with the
// given authorized_keys options.
func startGateway(t *testing.T, permit relay.PermitTunnel, keyOptions string) *testGateway {
	t.Helper()
	g := &testGateway{client: newSigner(t)}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(g.client.PublicKey())))
	if keyOptions != "" {
		line = keyOptions + " " + line
	}
	path := filepath.Join(t.TempDir(), "authorized_keys")
	if err := os.WriteFile(path, []byte("# a comment\n\n"+line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := relay.LoadAuthorizedKeys(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := relay.NewServer(relay.ServerConfig{
		HostKeys: []ssh.Signer{newSigner(t)}, Keys: keys, PermitTunnel: permit, MTU: 1500,
		Open: func(ctx context.Context, req relay.TunnelRequest) (relay.Device, error) {
			d := relaytest.New(1500, 8)
			g.mu.Lock()
			g.devs, g.reqs = append(g.devs, d), append(g.reqs, req)
			g.mu.Unlock()
			return configured{d}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return g
}

func (g *testGateway) dial(t *testing.T) *ssh.Client {
	t.Helper()
	c, err := ssh.Dial("tcp", g.addr, &ssh.ClientConfig{
		User: "test", Auth: []ssh.AuthMethod{ssh.PublicKeys(g.client)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func openTunnel(c *ssh.Client, mode relay.Mode, unit uint32) (ssh.Channel, error) {
	ch, reqs, err := c.OpenChannel(relay.ChannelType, ssh.Marshal(struct{ Mode, Unit uint32 }{uint32(mode), unit}))
	if err != nil {
		return nil, err
	}
	go ssh.DiscardRequests(reqs)
	return ch, nil
}

func ipv4Packet(payload string) []byte {
	p := make([]byte, 20+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8], p[9] = 64, 17
	copy(p[12:], []byte{198, 18, 0, 2, 198, 18, 0, 1})
	copy(p[20:], payload)
	return p
}

func withAF(af uint32, pkt []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, af), pkt...)
}

func TestServerCarriesPacketsBothWays(t *testing.T) {
	g := startGateway(t, relay.PermitYes, "")
	ch, err := openTunnel(g.dial(t), relay.PointToPoint, relay.AnyUnit)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// Several messages written back to back reach the device one by one,
	// with the address family stripped, whatever x/crypto queued together.
	var sent [][]byte
	for i := range 20 {
		p := ipv4Packet(strings.Repeat("x", i*37))
		sent = append(sent, p)
		if _, err := ch.Write(withAF(2, p)); err != nil {
			t.Fatal(err)
		}
	}
	g.mu.Lock()
	dev := g.devs[0]
	g.mu.Unlock()
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
	p := ipv4Packet("reply")
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
	g := startGateway(t, relay.PermitYes, "")
	ch, err := openTunnel(g.dial(t), relay.PointToPoint, relay.AnyUnit)
	if err != nil {
		t.Fatal(err)
	}
	bad := [][]byte{
		{1, 2},                            // shorter than the family word
		withAF(24, ipv4Packet("v4 as 6")), // wrong family
		withAF(2, ipv4Packet("cut"))[:22], // truncated
		withAF(7, ipv4Packet("af 7")),     // unknown family
	}
	for _, m := range bad {
		if _, err := ch.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	good := ipv4Packet("still here")
	if _, err := ch.Write(withAF(2, good)); err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	dev := g.devs[0]
	g.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := dev.Recv(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, good) {
		t.Fatalf("after bad frames got %x, want %x", got, good)
	}
}

func TestServerPolicy(t *testing.T) {
	tests := []struct {
		name    string
		permit  relay.PermitTunnel
		options string
		mode    relay.Mode
		unit    uint32
		refuse  string // in the open failure text; empty: accepted
		gotUnit uint32
	}{
		{"yes-l3", relay.PermitYes, "", relay.PointToPoint, relay.AnyUnit, "", relay.AnyUnit},
		{"yes-l2-unit", relay.PermitYes, "", relay.Ethernet, 4, "", 4},
		{"no", relay.PermitNo, "", relay.PointToPoint, relay.AnyUnit, "--permit-tunnel no", 0},
		{"p2p-only", relay.PermitPointToPoint, "", relay.Ethernet, relay.AnyUnit, "ethernet tunnel refused", 0},
		{"ethernet-only", relay.PermitEthernet, "", relay.PointToPoint, relay.AnyUnit, "point-to-point tunnel refused", 0},
		{"forced-any-becomes-5", relay.PermitYes, `tunnel="5"`, relay.PointToPoint, relay.AnyUnit, "", 5},
		{"forced-same", relay.PermitYes, `tunnel="5"`, relay.PointToPoint, 5, "", 5},
		{"forced-other", relay.PermitYes, `tunnel="5"`, relay.PointToPoint, 3, `forces tunnel="5" but the client asked for unit 3`, 0},
		{"forced-any-only", relay.PermitYes, `tunnel="any"`, relay.PointToPoint, 2, `forces tunnel="any"`, 0},
		{"restrict", relay.PermitYes, `restrict`, relay.PointToPoint, relay.AnyUnit, "has the restrict option", 0},
		{"bad-mode", relay.PermitYes, "", relay.Mode(9), relay.AnyUnit, "unknown tunnel mode", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := startGateway(t, tt.permit, tt.options)
			_, err := openTunnel(g.dial(t), tt.mode, tt.unit)
			if tt.refuse == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				g.mu.Lock()
				defer g.mu.Unlock()
				if g.reqs[0].Unit != tt.gotUnit || g.reqs[0].Mode != tt.mode {
					t.Fatalf("opened mode %v unit %d, want %v %d", g.reqs[0].Mode, g.reqs[0].Unit, tt.mode, tt.gotUnit)
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
			g := startGateway(t, relay.PermitYes, tt.from)
			c, err := ssh.Dial("tcp", g.addr, &ssh.ClientConfig{
				User: "test", Auth: []ssh.AuthMethod{ssh.PublicKeys(g.client)},
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
	g := startGateway(t, relay.PermitYes, "")
	c := g.dial(t)
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
		_, err := relay.LoadAuthorizedKeys(path, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("error %v, want it to contain %q", err, tt.want)
		}
	}
	// A missing file starts empty and is picked up once it appears.
	missing := filepath.Join(t.TempDir(), "authorized_keys")
	keys, err := relay.LoadAuthorizedKeys(missing, nil)
	if err != nil || keys.Len() != 0 {
		t.Fatalf("missing file: %v, %d keys", err, keys.Len())
	}
	signer := newSigner(t)
	if _, err := keys.Lookup(signer.PublicKey(), &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}); err == nil || !strings.Contains(err.Error(), "missing or empty") {
		t.Fatalf("lookup in a missing file: %v", err)
	}
	os.WriteFile(missing, ssh.MarshalAuthorizedKey(signer.PublicKey()), 0o600)
	if _, err := keys.Lookup(signer.PublicKey(), &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
		t.Fatalf("the key added after start was not found: %v", err)
	}
}

func TestHostKeyIsCreatedPrivateAndReused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "host_key")
	k1, err := relay.LoadOrCreateHostKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("host key mode %v, want 0600", fi.Mode().Perm())
	}
	k2, err := relay.LoadOrCreateHostKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k1.PublicKey().Marshal(), k2.PublicKey().Marshal()) {
		t.Fatal("a second start made a new host key")
	}
}

func TestAuthorizedKeysExample(t *testing.T) {
	const path = "../testdata/authorized_keys.example"
	keys, err := relay.LoadAuthorizedKeys(path, nil)
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
	if o, err := keys.Lookup(pubs[0], from("127.0.0.1")); err != nil || o.ForceUnit != nil || o.Restrict {
		t.Errorf("plain key: %+v %v", o, err)
	}
	if o, err := keys.Lookup(pubs[1], from("198.18.0.5")); err != nil || o.ForceUnit == nil || *o.ForceUnit != 5 {
		t.Errorf("tunnel=5 key: %+v %v", o, err)
	}
	if _, err := keys.Lookup(pubs[1], from("198.18.9.9")); err == nil || !strings.Contains(err.Error(), "not allowed from") {
		t.Errorf("negated from= address let in: %v", err)
	}
	if o, err := keys.Lookup(pubs[2], from("127.0.0.1")); err != nil || !o.Restrict || !strings.HasSuffix(o.Source, ":11") {
		t.Errorf("restrict key: %+v %v", o, err)
	}
}

// A client may close its tunnel and open another on the same connection,
// and may not hold more than the gateway's limit at once.
func TestServerReopenAndChannelLimit(t *testing.T) {
	g := startGateway(t, relay.PermitYes, "")
	c := g.dial(t)
	for i := range 3 {
		ch, err := openTunnel(c, relay.PointToPoint, relay.AnyUnit)
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		ch.Close()
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
	// Up to 10; the three closed ones may still be on their way out.
	if len(open) < 7 || len(open) > 10 {
		t.Errorf("held %d tunnels, want the limit of 10", len(open))
	}
	// The gateway still serves new connections.
	if _, err := openTunnel(g.dial(t), relay.PointToPoint, relay.AnyUnit); err != nil {
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
	load := func(content string) (*relay.AuthorizedKeys, error) {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return relay.LoadAuthorizedKeys(path, nil)
	}

	// Options sshvpn does not act on are left alone, whatever they hold.
	keys, err := load(`command="grep -E '\d+' \"x\"",no-pty ` + line + "\n")
	if err != nil {
		t.Fatalf("a file sshd takes was refused: %v", err)
	}
	if _, err := keys.Lookup(signer.PublicKey(), from); err != nil {
		t.Fatal(err)
	}
	if _, err := load(`tunnel='3' ` + line + "\n"); err == nil || !strings.Contains(err.Error(), "double quotes") {
		t.Errorf("single-quoted tunnel= accepted: %v", err)
	}
	if _, err := load(`cert-authority ` + line + "\n"); err == nil || !strings.Contains(err.Error(), "cert-authority") {
		t.Errorf("cert-authority line accepted: %v", err)
	}

	// An expired key is refused; the same key on a later line still counts.
	keys, err = load(`expiry-time="20200101Z" ` + line + "\n" + `from="198.18.0.0/15" ` + line + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Lookup(signer.PublicKey(), from); err == nil {
		t.Error("expired key accepted")
	}
	os.WriteFile(path, []byte(`expiry-time="20200101Z" `+line+"\n"+`tunnel="2" `+line+"\n"), 0o600)
	o, err := keys.Lookup(signer.PublicKey(), from)
	if err != nil || o.ForceUnit == nil || *o.ForceUnit != 2 {
		t.Errorf("the second line for the same key was not used: %+v %v", o, err)
	}

	// Once running, a bad line is skipped and the good ones still work.
	os.WriteFile(path, []byte("garbage here\n"+line+"\n"), 0o600)
	if _, err := keys.Lookup(signer.PublicKey(), from); err != nil {
		t.Errorf("a bad line locked the good key out: %v", err)
	}
	// A key removed from the file is refused at the next login.
	os.WriteFile(path, []byte("# nobody\n"), 0o600)
	if _, err := keys.Lookup(signer.PublicKey(), from); err == nil {
		t.Error("a removed key still logs in")
	}
}

// configured is a fake device that describes its tunnel.
type configured struct{ *relaytest.Dev }

func (configured) TunnelConfig() relay.TunnelConfig {
	return relay.TunnelConfig{MTU: 1500, Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.3.2/24")},
		Gateways: []netip.Addr{netip.MustParseAddr("198.18.3.1")}, Routes: []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24")}}
}

// An sshvpn client learns its tunnel's configuration; a stock client is
// sent nothing it does not know.
func TestServerSendsTunnelConfigToSSHVPNClients(t *testing.T) {
	g := startGateway(t, relay.PermitYes, "")
	for _, version := range []string{"SSH-2.0-sshvpn", "SSH-2.0-OpenSSH_9.2p1"} {
		c, err := ssh.Dial("tcp", g.addr, &ssh.ClientConfig{
			User: "test", Auth: []ssh.AuthMethod{ssh.PublicKeys(g.client)}, ClientVersion: version,
			HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, reqs, err := c.OpenChannel(relay.ChannelType, ssh.Marshal(struct{ Mode, Unit uint32 }{1, relay.AnyUnit}))
		if err != nil {
			t.Fatal(err)
		}
		got, err := relay.WaitTunnelConfig(context.Background(), reqs, 500*time.Millisecond)
		if err != nil {
			t.Fatal(err)
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
