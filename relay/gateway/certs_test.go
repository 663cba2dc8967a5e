package gateway_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
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
)

// certSpec is a user certificate to sign.
type certSpec struct {
	principals    []string
	after, before time.Time         // zero: always, forever
	critical      map[string]string // critical options
	ext           map[string]string // nil: ssh-keygen's default permits
	host          bool              // a host certificate
}

// defaultExtensions are what ssh-keygen -s grants unless told otherwise.
var defaultExtensions = map[string]string{"permit-X11-forwarding": "", "permit-agent-forwarding": "",
	"permit-port-forwarding": "", "permit-pty": "", "permit-user-rc": ""}

// signCert certifies key with ca and returns the certificate.
func signCert(t *testing.T, ca ssh.Signer, key ssh.PublicKey, s certSpec) *ssh.Certificate {
	t.Helper()
	c := &ssh.Certificate{Key: key, Serial: 7, CertType: ssh.UserCert, KeyId: "test", ValidPrincipals: s.principals,
		ValidBefore: ssh.CertTimeInfinity, Permissions: ssh.Permissions{CriticalOptions: s.critical, Extensions: s.ext}}
	if s.host {
		c.CertType = ssh.HostCert
	}
	if c.Extensions == nil {
		c.Extensions = defaultExtensions
	}
	if !s.after.IsZero() {
		c.ValidAfter = uint64(s.after.Unix())
	}
	if !s.before.IsZero() {
		c.ValidBefore = uint64(s.before.Unix())
	}
	if err := c.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return c
}

// certFile writes an authorized_keys file of lines in which {CA1}, {CA2}...
// stand for the CAs' keys, and loads it.
func certFile(t *testing.T, cas []ssh.Signer, lines ...string) *gateway.AuthorizedKeys {
	t.Helper()
	pairs := []string{}
	for i, ca := range cas {
		pairs = append(pairs, "{CA"+string(rune('1'+i))+"}", keyLine(ca))
	}
	content := strings.NewReplacer(pairs...).Replace(strings.Join(lines, "\n") + "\n")
	path := filepath.Join(t.TempDir(), "authorized_keys")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := gateway.LoadAuthorizedKeys(path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func addr(ip string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000} }

// Each check sshd makes of a certificate offered against authorized_keys
// refuses the login when it fails, and a line that refuses leaves the
// next line with the same CA to try.
func TestCertificateLookup(t *testing.T) {
	var cas []ssh.Signer
	for range 6 {
		cas = append(cas, gatewaytest.NewSigner(t))
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaCA, err := ssh.NewSignerFromKey(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	sha1CA, err := ssh.NewSignerWithAlgorithms(rsaCA.(ssh.AlgorithmSigner), []string{ssh.KeyAlgoRSA})
	if err != nil {
		t.Fatal(err)
	}
	cas = append(cas, rsaCA)
	keys := certFile(t, cas,
		`cert-authority,from="198.18.0.9",restrict {CA1}`, // 1: only from 198.18.0.9
		`cert-authority {CA1}`,                            // 2
		`cert-authority,principals="ops,alice,,root" {CA2}`,
		`cert-authority,from="198.18.0.2" {CA3}`,
		`cert-authority,expiry-time="20200101Z" {CA4}`,
		`cert-authority,command="/bin/true" {CA5}`,
		`{CA6}`,
		`cert-authority {CA7}`,
	)
	user := gatewaytest.NewSigner(t).PublicKey()
	now := time.Now()
	root := []string{"root"}
	for _, tt := range []struct {
		name   string
		ca     ssh.Signer
		spec   certSpec
		user   string
		from   string
		refuse string // in the error; empty: accepted
		check  func(*gateway.KeyOptions) string
	}{
		{name: "valid", ca: cas[0], spec: certSpec{principals: root}, check: func(o *gateway.KeyOptions) string {
			if !strings.HasSuffix(o.Source, ":2") || o.Restrict || o.NoPortForwarding || !strings.Contains(o.Certificate, `ID "test" (serial 7)`) {
				return "want line 2's options, forwarding allowed and the certificate named"
			}
			return ""
		}},
		{name: "first line when its from= fits", ca: cas[0], spec: certSpec{principals: root}, from: "198.18.0.9",
			check: func(o *gateway.KeyOptions) string {
				if !strings.HasSuffix(o.Source, ":1") || !o.Restrict || !o.NoPortForwarding {
					return "want line 1's restrict"
				}
				return ""
			}},
		{name: "other user", ca: cas[0], spec: certSpec{principals: []string{"alice"}}, refuse: `user "root" is not among its principals`},
		{name: "one of several principals", ca: cas[0], spec: certSpec{principals: []string{"alice", "root"}}},
		{name: "expired", ca: cas[0], spec: certSpec{principals: root, before: now.Add(-time.Hour)}, refuse: "expired"},
		{name: "not yet valid", ca: cas[0], spec: certSpec{principals: root, after: now.Add(time.Hour)}, refuse: "not yet valid"},
		{name: "inside its window", ca: cas[0], spec: certSpec{principals: root, after: now.Add(-time.Hour), before: now.Add(time.Hour)}},
		{name: "host certificate", ca: cas[0], spec: certSpec{principals: root, host: true}, refuse: "not a user certificate"},
		{name: "unknown critical option", ca: cas[0], spec: certSpec{principals: root, critical: map[string]string{"no-such-option": ""}},
			refuse: `unknown critical option "no-such-option"`},
		{name: "unknown extension", ca: cas[0], spec: certSpec{principals: root, ext: map[string]string{"no-such-extension@example.com": ""}},
			check: func(o *gateway.KeyOptions) string {
				if !o.NoPortForwarding {
					return "forwarding allowed without permit-port-forwarding"
				}
				return ""
			}},
		{name: "verify-required", ca: cas[0], spec: certSpec{principals: root, critical: map[string]string{"verify-required": ""}},
			refuse: "verify-required"},
		{name: "source-address", ca: cas[0], spec: certSpec{principals: root, critical: map[string]string{"source-address": "198.18.0.2/32"}},
			refuse: "source-address"},
		{name: "source-address fits", ca: cas[0], spec: certSpec{principals: root, critical: map[string]string{"source-address": "127.0.0.0/8,198.18.0.0/15"}}},
		{name: "source-address with host bits", ca: cas[0], spec: certSpec{principals: root, critical: map[string]string{"source-address": "127.0.0.1/8"}},
			refuse: "host bits"},
		{name: "force-command", ca: cas[0], spec: certSpec{principals: root, critical: map[string]string{"force-command": "/bin/false"}},
			check: func(o *gateway.KeyOptions) string {
				if o.ForceCommand != "/bin/false" || o.NoPortForwarding {
					return "want the command recorded and forwarding allowed"
				}
				return ""
			}},
		{name: "principals= names it", ca: cas[1], spec: certSpec{principals: []string{"ops"}}},
		{name: "principals= is not the user", ca: cas[1], spec: certSpec{principals: root}, refuse: "principals="},
		{name: "principals= ends at an empty entry", ca: cas[1], spec: certSpec{principals: []string{"root"}}, refuse: "principals="},
		{name: "a principal with a comma is a list", ca: cas[1], spec: certSpec{principals: []string{"x,alice"}}},
		{name: "principals= has no wildcards", ca: cas[1], spec: certSpec{principals: []string{"op*"}}, refuse: "principals="},
		{name: "CA's from=", ca: cas[2], spec: certSpec{principals: root}, refuse: "is not allowed from 127.0.0.1"},
		{name: "CA's from= fits", ca: cas[2], spec: certSpec{principals: root}, from: "198.18.0.2"},
		{name: "CA's line expired", ca: cas[3], spec: certSpec{principals: root}, refuse: "expired at 2020"},
		{name: "same forced command", ca: cas[4], spec: certSpec{principals: root, critical: map[string]string{"force-command": "/bin/true"}}},
		{name: "other forced command", ca: cas[4], spec: certSpec{principals: root, critical: map[string]string{"force-command": "/bin/false"}},
			refuse: "differs from the line's command="},
		{name: "CA listed without cert-authority", ca: cas[5], spec: certSpec{principals: root}, refuse: "no cert-authority line"},
		{name: "RSA CA, SHA-2", ca: rsaCA, spec: certSpec{principals: root}},
		{name: "RSA CA, SHA-1", ca: sha1CA, spec: certSpec{principals: root}, refuse: "signature algorithm ssh-rsa"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.user == "" {
				tt.user = "root"
			}
			if tt.from == "" {
				tt.from = "127.0.0.1"
			}
			cert := signCert(t, tt.ca, user, tt.spec)
			o, err := keys.Lookup(cert, tt.user, addr(tt.from))
			switch {
			case tt.refuse == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.refuse != "" && (err == nil || !strings.Contains(err.Error(), tt.refuse)):
				t.Fatalf("Lookup = %+v, %v; want a refusal saying %q", o, err, tt.refuse)
			case tt.check != nil:
				if why := tt.check(o); why != "" {
					t.Fatalf("%+v: %s", o, why)
				}
			}
		})
	}

	// A certificate changed after signing, and the CA's own key.
	cert := signCert(t, cas[0], user, certSpec{principals: root})
	cert.ValidPrincipals = []string{"root", "admin"}
	if _, err := keys.Lookup(cert, "admin", addr("127.0.0.1")); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Errorf("a tampered certificate: %v", err)
	}
	if _, err := keys.Lookup(cas[0].PublicKey(), "root", addr("127.0.0.1")); err == nil {
		t.Error("a CA's key logged in as a plain key")
	}
}

// Lines through which sshd lets nobody in are skipped with a warning:
// principals= without cert-authority (sshd refuses every login through
// it), and a certificate written where a key belongs (sshd compares it
// with nothing a client offers).
func TestLinesSSHDNeverMatches(t *testing.T) {
	bad, good, ca := gatewaytest.NewSigner(t), gatewaytest.NewSigner(t), gatewaytest.NewSigner(t)
	cert := signCert(t, ca, bad.PublicKey(), certSpec{principals: []string{"root"}})
	path := filepath.Join(t.TempDir(), "authorized_keys")
	content := `principals="root" ` + keyLine(bad) + "\n" +
		strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert))) + "\n" +
		`no-pty ` + keyLine(good) + "\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	keys, err := gateway.LoadAuthorizedKeys(path, slog.New(slog.NewTextHandler(&log, nil)))
	if err != nil {
		t.Fatalf("lines sshd takes (and never matches) made the file fatal: %v", err)
	}
	if _, err := keys.Lookup(bad.PublicKey(), "root", localhost); err == nil {
		t.Error("a plain key with principals= logged in")
	}
	if _, err := keys.Lookup(cert, "root", localhost); err == nil {
		t.Error("a certificate written as a key logged in")
	}
	if _, err := keys.Lookup(good.PublicKey(), "root", localhost); err != nil {
		t.Error(err)
	}
	for i, want := range []string{"principals= on a key without cert-authority", "a certificate, not a key"} {
		if !strings.Contains(log.String(), want) || !strings.Contains(log.String(), path+":"+string(rune('1'+i))) {
			t.Errorf("no warning naming line %d and %q:\n%s", i+1, want, log.String())
		}
	}
}

// Options sshd refuses to see twice on a line make it skip the line; of
// two expiry times the earlier counts.
func TestRepeatedOptions(t *testing.T) {
	s := gatewaytest.NewSigner(t)
	path := filepath.Join(t.TempDir(), "authorized_keys")
	for _, opts := range []string{`from="*",from="*"`, `principals="a",principals="a",cert-authority`, `command="",command=""`} {
		os.WriteFile(path, []byte(opts+" "+keyLine(s)+"\n"), 0o600)
		if _, err := gateway.LoadAuthorizedKeys(path, nil); err == nil || !strings.Contains(err.Error(), "more than one") {
			t.Errorf("%s: %v, want the line refused", opts, err)
		}
	}
	os.WriteFile(path, []byte(`expiry-time="20200101Z",expiry-time="29990101Z" `+keyLine(s)+"\n"), 0o600)
	keys, err := gateway.LoadAuthorizedKeys(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Lookup(s.PublicKey(), "root", localhost); err == nil {
		t.Error("the later of two expiry times counted")
	}
}

// forwardingGateway is a backend that opens fake tunnels and completes
// every direct-tcpip it is asked for, so that a refusal is the gateway's.
type forwardingGateway struct{ *gatewaytest.Gateway }

func (forwardingGateway) DialStream(ctx context.Context, req relay.StreamRequest) (net.Conn, error) {
	a, b := net.Pipe()
	go func() { b.Close() }()
	return a, nil
}

// startCertGateway serves authorized_keys lines (with {CA1}... as in
// certFile) until the test ends, logging to log.
func startCertGateway(t *testing.T, cas []ssh.Signer, log *relaytest.Buffer, lines ...string) (string, *gatewaytest.Gateway) {
	t.Helper()
	keys := certFile(t, cas, lines...)
	g := &gatewaytest.Gateway{}
	srv, err := gateway.New(gateway.Config{HostKeys: []ssh.Signer{gatewaytest.NewSigner(t)}, Keys: keys,
		PermitTunnel: gateway.PermitYes, Backend: forwardingGateway{g},
		Log: slog.New(slog.NewTextHandler(log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gatewaytest.Serve(t, srv, ln)
	return ln.Addr().String(), g
}

// dialCert logs in as root with cert, for the key signer.
func dialCert(t *testing.T, addr string, key ssh.Signer, cert *ssh.Certificate) (*ssh.Client, error) {
	t.Helper()
	cs, err := ssh.NewCertSigner(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(cs)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func openForward(c *ssh.Client, host string, port uint32) error {
	ch, reqs, err := c.OpenChannel("direct-tcpip", ssh.Marshal(struct {
		Host       string
		Port       uint32
		OriginHost string
		OriginPort uint32
	}{host, port, "127.0.0.1", 40000}))
	if err != nil {
		return err
	}
	go ssh.DiscardRequests(reqs)
	ch.Close()
	return nil
}

// A certificate login reaches every decision the line's options make, as
// a plain key's does: forwarding (the line's restrict and
// no-port-forwarding, the certificate's permit-port-forwarding,
// permitopen), tunnels (restrict, tunnel=) and the key's own networks
// (SSHVPN_ALLOWED_IPS); a forced command is logged once, and stops neither
// tunnels nor forwards. The client is the key certified, whatever the
// certificate.
func TestCertificateLoginOptions(t *testing.T) {
	cas := []ssh.Signer{gatewaytest.NewSigner(t), gatewaytest.NewSigner(t), gatewaytest.NewSigner(t), gatewaytest.NewSigner(t)}
	var log relaytest.Buffer
	addr, g := startCertGateway(t, cas, &log,
		`cert-authority {CA1}`,
		`cert-authority,restrict {CA2}`,
		`cert-authority,no-port-forwarding {CA3}`,
		`cert-authority,tunnel="7",permitopen="localhost:22",environment="SSHVPN_ALLOWED_IPS=198.19.7.0/24" {CA4}`)
	key := gatewaytest.NewSigner(t)
	root := []string{"root"}
	noForwarding := map[string]string{"permit-pty": ""}
	forced := map[string]string{"force-command": "/usr/bin/false"}
	for _, tt := range []struct {
		name    string
		ca      ssh.Signer
		spec    certSpec
		forward map[string]bool   // host (port 22) to whether it is forwarded
		tunnel  map[uint32]uint32 // unit asked to unit opened, 0 for refused
	}{
		{"plain", cas[0], certSpec{principals: root}, map[string]bool{"localhost": true}, map[uint32]uint32{3: 3}},
		{"no permit-port-forwarding", cas[0], certSpec{principals: root, ext: noForwarding}, map[string]bool{"localhost": false}, map[uint32]uint32{3: 3}},
		{"force-command", cas[0], certSpec{principals: root, critical: forced}, map[string]bool{"localhost": true}, map[uint32]uint32{3: 3}},
		{"restrict", cas[1], certSpec{principals: root}, map[string]bool{"localhost": false}, map[uint32]uint32{3: 0}},
		{"no-port-forwarding", cas[2], certSpec{principals: root}, map[string]bool{"localhost": false}, map[uint32]uint32{3: 3}},
		{"tunnel= and permitopen", cas[3], certSpec{principals: root}, map[string]bool{"localhost": true, "LOCALHOST": false, "127.0.0.1": false},
			map[uint32]uint32{3: 0, relay.AnyUnit: 7}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := dialCert(t, addr, key, signCert(t, tt.ca, key.PublicKey(), tt.spec))
			if err != nil {
				t.Fatalf("login refused: %v", err)
			}
			for host, want := range tt.forward {
				err := openForward(c, host, 22)
				var oe *ssh.OpenChannelError
				if want && err != nil || !want && (!errors.As(err, &oe) || oe.Reason != ssh.Prohibited) {
					t.Errorf("forward to %s:22: %v, want allowed=%v", host, err, want)
				}
			}
			for unit, want := range tt.tunnel {
				before := len(g.Reqs())
				_, err := openTunnel(c, relay.PointToPoint, unit)
				switch {
				case want == 0 && err == nil:
					t.Errorf("tunnel unit %d opened, want it refused", unit)
				case want != 0 && err != nil:
					t.Errorf("tunnel unit %d refused: %v", unit, err)
				case want != 0 && g.Reqs()[before].Key != ssh.FingerprintSHA256(key.PublicKey()):
					t.Errorf("the tunnel's key is %s, want the certified key's %s", g.Reqs()[before].Key, ssh.FingerprintSHA256(key.PublicKey()))
				case want != 0 && g.Reqs()[before].Unit != want:
					t.Errorf("tunnel unit %d opened unit %d, want %d", unit, g.Reqs()[before].Unit, want)
				case want != 0 && tt.ca == cas[3] && (len(g.Reqs()[before].AllowedIPs) != 1 || g.Reqs()[before].AllowedIPs[0].String() != "198.19.7.0/24"):
					t.Errorf("the CA line's SSHVPN_ALLOWED_IPS did not reach the tunnel: %v", g.Reqs()[before].AllowedIPs)
				}
			}
		})
	}
	c, err := dialCert(t, addr, key, signCert(t, cas[0], key.PublicKey(), certSpec{principals: root, critical: forced}))
	if err != nil {
		t.Fatal(err)
	}
	openForward(c, "localhost", 22)
	openTunnel(c, relay.PointToPoint, 3)
	c.Close()
	// The gateway logs a login before it serves the login's channels, so
	// the answers above come after the lines counted here.
	if n := strings.Count(log.String(), "certificate accepted"); n != 7 {
		t.Errorf("%d certificate logins logged, want 7", n)
	}
	if n := strings.Count(log.String(), "forced command ignored"); n != 2 {
		t.Errorf("%d warnings of a forced command for 2 logins with one, want one each:\n%s", n, log.String())
	}
}
