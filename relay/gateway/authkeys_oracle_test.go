package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/internal/nstest"
	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/gateway"
	"github.com/sshvpn/sshvpn/relay/gateway/gatewaytest"
	"github.com/sshvpn/sshvpn/relay/relaytest"
)

// The differential test of authorized_keys: stock sshd is the oracle. One
// file of plain keys with options and cert-authority lines, keys and
// certificates made by that OpenSSH's ssh-keygen, and for each login (a
// key or certificate, from a source address) the same client logs in to
// sshd and to sshvpn's gateway, then asks each for the same forwards and
// tunnels. Both must accept or refuse the login and each request alike.
//
// sshd and the gateway run in a namespace of the test's own, for a
// loopback where the client can bind 127.0.0.2 (for from= and
// source-address) and nothing else listens. The client is x/crypto's: it
// offers exactly one key per login, so a refusal is that key's, and it
// tells a refusal ("unable to authenticate", an open failure) from a
// broken run, which fails the test. A few logins are made by that
// generation's ssh too, which offers certificates its own way.

const (
	oracleSSHD    = "127.0.0.1:22"
	oracleGateway = "127.0.0.1:2222"
	oracleTarget  = 7000 // the port of a listener on 127.0.0.1 that direct-tcpip reaches
)

// oracleLines is the authorized_keys file. {P1}... are plain keys, {CA1}...
// CAs (all ed25519 but CARSA), {CERT7} a certificate written as a key.
var oracleLines = []string{
	`no-pty,command="/bin/true" {P1}`,
	`principals="root" {P2}`,
	`restrict {P3}`,
	`permitopen="localhost:7000" {P4}`,
	`from="127.0.0.2" {P5}`,
	`tunnel="5" {P6}`,
	`{CERT7}`,
	`cert-authority,from="127.0.0.9",restrict {CA1}`,
	`cert-authority {CA1}`,
	`cert-authority,principals="ops,alice" {CA2}`,
	`cert-authority,from="127.0.0.2" {CA3}`,
	`cert-authority,no-port-forwarding {CA4}`,
	`cert-authority,permitopen="localhost:7000",tunnel="7" {CA5}`,
	`cert-authority,command="/bin/true" {CA6}`,
	`cert-authority,expiry-time="20200101" {CA7}`,
	`{CA8}`,
	`cert-authority,restrict {CA9}`,
	`cert-authority {CARSA}`,
}

// oracleCAs are the CA keys; CAX is on no line.
var oracleCAs = []string{"CA1", "CA2", "CA3", "CA4", "CA5", "CA6", "CA7", "CA8", "CA9", "CAX"}

// oracleCert is a certificate of the key "user" (of P7 for CERT7):
// ssh-keygen -s CA -I name args.
type oracleCert struct {
	name, ca string
	args     []string
}

var oracleCerts = []oracleCert{
	{"valid", "CA1", []string{"-n", "root", "-V", "-5m:+1h"}},
	{"other-user", "CA1", []string{"-n", "alice,bob"}},
	{"no-principals", "CA1", nil},
	{"expired", "CA1", []string{"-n", "root", "-V", "20200101:20200201"}},
	{"not-yet-valid", "CA1", []string{"-n", "root", "-V", "+1d:+2d"}},
	{"force-command", "CA1", []string{"-n", "root", "-O", "force-command=/bin/false"}},
	{"source-address", "CA1", []string{"-n", "root", "-O", "source-address=127.0.0.2/32,198.18.0.0/15"}},
	{"no-extensions", "CA1", []string{"-n", "root", "-O", "clear"}},
	{"no-port-forwarding", "CA1", []string{"-n", "root", "-O", "no-port-forwarding"}},
	{"unknown-critical", "CA1", []string{"-n", "root", "-O", "critical:no-such@example.com=x"}},
	{"unknown-extension", "CA1", []string{"-n", "root", "-O", "extension:no-such@example.com"}},
	{"verify-required", "CA1", []string{"-n", "root", "-O", "verify-required"}},
	{"host", "CA1", []string{"-h", "-n", "root"}},
	{"ops", "CA2", []string{"-n", "ops"}},
	{"root-for-ops", "CA2", []string{"-n", "root"}},
	{"wildcard-for-ops", "CA2", []string{"-n", "op*"}},
	{"from-ca", "CA3", []string{"-n", "root"}},
	{"ca-no-port-forwarding", "CA4", []string{"-n", "root"}},
	{"ca-permitopen-tunnel", "CA5", []string{"-n", "root"}},
	{"same-command", "CA6", []string{"-n", "root", "-O", "force-command=/bin/true"}},
	{"other-command", "CA6", []string{"-n", "root", "-O", "force-command=/bin/false"}},
	{"ca-expired", "CA7", []string{"-n", "root"}},
	{"ca-not-cert-authority", "CA8", []string{"-n", "root"}},
	{"ca-restrict", "CA9", []string{"-n", "root"}},
	{"wrong-ca", "CAX", []string{"-n", "root"}},
	{"rsa-sha2-512", "CARSA", []string{"-n", "root", "-t", "rsa-sha2-512"}},
	{"rsa-sha1", "CARSA", []string{"-n", "root", "-t", "ssh-rsa"}},
	{"rsa-user", "CA1", []string{"-n", "root"}}, // of the RSA key userrsa
}

// authCase is one login. want is what sshd does: "refused", or one letter
// per probe after a login (y accepted, n refused). sshvpn, when set, is
// what the gateway does where it deliberately differs from sshd 9.2 and
// 10.0.
type authCase struct {
	key    string // a plain key (P1, CA1...) or "cert:NAME"
	from   string // source address; empty for 127.0.0.1
	probes []string
	want   string
	sshvpn string
}

// Probes: direct-tcpip to a host on oracleTarget, or a tun@openssh.com
// channel (point-to-point) for a unit.
var (
	fwd        = "fwd:localhost"
	fwdUpper   = "fwd:LOCALHOST"
	fwdIP      = "fwd:127.0.0.1"
	tunAny     = "tun:any"
	tun3       = "tun:3"
	bothProbes = []string{fwd, tunAny}
)

var authCases = []authCase{
	{key: "P1", probes: bothProbes, want: "yy"},
	{key: "P2", want: "refused"},
	// restrict refuses tunnels from OpenSSH 10.5; sshvpn has its rule.
	{key: "P3", probes: bothProbes, want: "ny", sshvpn: "nn"},
	{key: "P4", probes: []string{fwd, fwdUpper, fwdIP}, want: "ynn"},
	{key: "P5", want: "refused"},
	{key: "P5", from: "127.0.0.2", probes: bothProbes, want: "yy"},
	{key: "P6", probes: []string{tunAny, tun3}, want: "yn"},
	{key: "P7", want: "refused"},
	{key: "cert:CERT7", want: "refused"},
	{key: "CA1", want: "refused"},
	{key: "cert:valid", probes: bothProbes, want: "yy"},
	{key: "cert:valid", from: "127.0.0.9", probes: bothProbes, want: "ny", sshvpn: "nn"},
	{key: "cert:other-user", want: "refused"},
	// No principals: anyone's for sshd 9.2 and 10.0, no one's from 10.3,
	// whose rule sshvpn has.
	{key: "cert:no-principals", probes: bothProbes, want: "yy", sshvpn: "refused"},
	{key: "cert:expired", want: "refused"},
	{key: "cert:not-yet-valid", want: "refused"},
	{key: "cert:force-command", probes: bothProbes, want: "yy"},
	{key: "cert:source-address", want: "refused"},
	{key: "cert:source-address", from: "127.0.0.2", probes: bothProbes, want: "yy"},
	{key: "cert:no-extensions", probes: bothProbes, want: "ny"},
	{key: "cert:no-port-forwarding", probes: bothProbes, want: "ny"},
	{key: "cert:unknown-critical", want: "refused"},
	{key: "cert:unknown-extension", probes: bothProbes, want: "yy"},
	// FIDO user verification is not checked here: sshvpn refuses.
	{key: "cert:verify-required", probes: bothProbes, want: "yy", sshvpn: "refused"},
	{key: "cert:host", want: "refused"},
	{key: "cert:ops", probes: bothProbes, want: "yy"},
	{key: "cert:root-for-ops", want: "refused"},
	{key: "cert:wildcard-for-ops", want: "refused"},
	{key: "cert:from-ca", want: "refused"},
	{key: "cert:from-ca", from: "127.0.0.2", probes: bothProbes, want: "yy"},
	{key: "cert:ca-no-port-forwarding", probes: bothProbes, want: "ny"},
	{key: "cert:ca-permitopen-tunnel", probes: []string{fwd, fwdUpper, fwdIP, tunAny, tun3}, want: "ynnyn"},
	{key: "cert:same-command", probes: bothProbes, want: "yy"},
	{key: "cert:other-command", want: "refused"},
	{key: "cert:ca-expired", want: "refused"},
	{key: "cert:ca-not-cert-authority", want: "refused"},
	{key: "cert:ca-restrict", probes: bothProbes, want: "ny", sshvpn: "nn"},
	{key: "cert:wrong-ca", want: "refused"},
	{key: "cert:rsa-sha2-512", probes: bothProbes, want: "yy"},
	{key: "cert:rsa-sha1", want: "refused"},
	{key: "cert:rsa-user", probes: bothProbes, want: "yy"},
}

// stockCases are logins the stock client of the same generation makes
// with a certificate (ssh -o CertificateFile), to sshd and to the gateway:
// whatever x/crypto's client does, ssh's own offer of a certificate must
// be taken and refused alike.
var stockCases = []struct {
	cert string
	want bool
}{{"valid", true}, {"rsa-user", true}, {"expired", false}, {"source-address", false}}

func TestAuthorizedKeysMatchSSHD(t *testing.T) {
	nstest.RequireRoot(t)
	for _, o := range nstest.OpenSSHs(t) {
		t.Run(o.Version, func(t *testing.T) {
			t.Parallel()
			e := newAuthOracle(t, o)
			for _, c := range authCases {
				name := c.key
				if c.from != "" {
					name += "/from=" + c.from
				}
				t.Run(name, func(t *testing.T) { e.run(t, c) })
			}
			for _, c := range stockCases {
				t.Run("ssh/"+c.cert, func(t *testing.T) {
					sshd, vpn := e.stockLogin(t, oracleSSHD, c.cert), e.stockLogin(t, oracleGateway, c.cert)
					if sshd != c.want {
						t.Errorf("ssh %s to sshd: logged in %v, the case says %v", e.o.Version, sshd, c.want)
					}
					if vpn != sshd {
						t.Errorf("ssh %s to sshvpn: logged in %v, sshd %v", e.o.Version, vpn, sshd)
					}
				})
			}
		})
	}
}

// stockLogin runs ssh -N with the certificate and reports whether it
// logged in: ssh says "Authenticated to" (and is then stopped) or exits
// with "Permission denied"; anything else fails the test.
func (e *authOracle) stockLogin(t *testing.T, server, cert string) bool {
	host, port, _ := net.SplitHostPort(server)
	cmd := e.ns.Cmd(e.o.SSH, "-F", "none", "-N", "-p", port, "-i", filepath.Join(e.dir, e.certKey[cert]),
		"-o", "CertificateFile="+filepath.Join(e.dir, cert+"-cert.pub"), "-o", "IdentitiesOnly=yes",
		"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "GlobalKnownHostsFile=/dev/null", "-o", "LogLevel=VERBOSE", "root@"+host)
	var stderr relaytest.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-exited
	}()
	deadline := time.After(time.Minute)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			exited <- err // for the deferred wait
			if strings.Contains(stderr.String(), "Permission denied") {
				return false
			}
			t.Fatalf("ssh to %s exited (%v) neither logged in nor refused:\n%s", server, err, stderr.String())
		case <-deadline:
			t.Fatalf("ssh to %s neither logged in nor exited within a minute:\n%s", server, stderr.String())
		case <-tick.C:
			if strings.Contains(stderr.String(), "Authenticated to") {
				return true
			}
		}
	}
}

// authOracle is one OpenSSH generation's sshd and a gateway beside it.
type authOracle struct {
	o       nstest.OpenSSH
	ns      *nstest.NS
	dir     string                // keys and certificates, as ssh-keygen wrote them
	signers map[string]ssh.Signer // by key or "cert:NAME"
	certKey map[string]string     // the key each certificate certifies
}

func newAuthOracle(t *testing.T, o nstest.OpenSSH) *authOracle {
	e := &authOracle{o: o, ns: nstest.New(t), signers: map[string]ssh.Signer{}, certKey: map[string]string{}}
	dir := t.TempDir()
	pubs := map[string]string{} // placeholder to key field
	keygen := func(name string, args ...string) {
		runKeygen(t, o, append([]string{"-q", "-N", "", "-C", name, "-f", filepath.Join(dir, name)}, args...)...)
		pubs["{"+name+"}"] = keyField(t, filepath.Join(dir, name+".pub"))
		e.signers[name] = loadSigner(t, filepath.Join(dir, name), "")
	}
	for i := 1; i <= 7; i++ {
		keygen(fmt.Sprint("P", i), "-t", "ed25519")
	}
	for _, ca := range oracleCAs {
		keygen(ca, "-t", "ed25519")
	}
	keygen("CARSA", "-t", "rsa", "-b", "3072")
	keygen("user", "-t", "ed25519")
	keygen("userrsa", "-t", "rsa", "-b", "3072")
	e.dir = dir
	for _, c := range append(oracleCerts, oracleCert{"CERT7", "CAX", []string{"-n", "root"}}) {
		key := "user"
		switch c.name {
		case "CERT7":
			key = "P7"
		case "rsa-user":
			key = "userrsa"
		}
		e.certKey[c.name] = key
		pub := filepath.Join(dir, c.name+".pub")
		data, err := os.ReadFile(filepath.Join(dir, key+".pub"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(pub, data, 0o600); err != nil {
			t.Fatal(err)
		}
		runKeygen(t, o, append([]string{"-q", "-s", filepath.Join(dir, c.ca), "-I", c.name, "-z", "42"}, append(c.args, pub)...)...)
		e.signers["cert:"+c.name] = loadSigner(t, filepath.Join(dir, key), filepath.Join(dir, c.name+"-cert.pub"))
		pubs["{"+c.name+"}"] = keyField(t, filepath.Join(dir, c.name+"-cert.pub"))
	}
	var repl []string
	for k, v := range pubs {
		repl = append(repl, k, v)
	}
	content := strings.NewReplacer(repl...).Replace(strings.Join(oracleLines, "\n") + "\n")
	if strings.Contains(content, "{") {
		t.Fatalf("a placeholder is left in authorized_keys:\n%s", content)
	}

	o.StartSSHD(t, e.ns, nstest.SSHDConfig{ListenAddr: oracleSSHD, PermitTunnel: "yes", AuthorizedKeys: content})
	e.startGateway(t, filepath.Join(dir, "gateway_authorized_keys"), content)
	// localhost is 127.0.0.1 alone in /etc/hosts, which the namespace
	// shares with the host.
	ln := e.ns.Listen(t, "tcp", net.JoinHostPort("127.0.0.1", fmt.Sprint(oracleTarget)))
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return e
}

func (e *authOracle) startGateway(t *testing.T, path, content string) {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	keys, err := gateway.LoadAuthorizedKeys(path, log)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := gateway.New(gateway.Config{HostKeys: []ssh.Signer{gatewaytest.NewSigner(t)}, Keys: keys,
		PermitTunnel: gateway.PermitYes, Backend: forwardingGateway{&gatewaytest.Gateway{}}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	gatewaytest.Serve(t, srv, e.ns.Listen(t, "tcp", oracleGateway))
}

func runKeygen(t *testing.T, o nstest.OpenSSH, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, o.SSHKeygen, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", o.SSHKeygen, strings.Join(args, " "), err, out)
	}
}

// keyField is the "type base64" of a .pub file.
func keyField(t *testing.T, path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(data))
	if len(f) < 2 {
		t.Fatalf("%s: %q is not a key", path, data)
	}
	return f[0] + " " + f[1]
}

// loadSigner reads a private key and, when cert is given, the certificate
// to present with it.
func loadSigner(t *testing.T, key, cert string) ssh.Signer {
	data, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.ParsePrivateKey(data)
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	if cert == "" {
		return s
	}
	data, err = os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		t.Fatalf("%s: %v", cert, err)
	}
	cs, err := ssh.NewCertSigner(pub.(*ssh.Certificate), s)
	if err != nil {
		t.Fatalf("%s: %v", cert, err)
	}
	return cs
}

func (e *authOracle) run(t *testing.T, c authCase) {
	from := c.from
	if from == "" {
		from = "127.0.0.1"
	}
	signer, ok := e.signers[c.key]
	if !ok {
		t.Fatalf("no key %s", c.key)
	}
	sshd := e.login(t, oracleSSHD, from, signer, c.probes)
	vpn := e.login(t, oracleGateway, from, signer, c.probes)
	vpnWant := c.want
	if c.sshvpn != "" {
		vpnWant = c.sshvpn
	}
	if sshd != c.want {
		t.Errorf("sshd %s: %s, the case says %s (probes %q)", e.o.Version, sshd, c.want, c.probes)
	}
	if vpn != vpnWant {
		t.Errorf("sshvpn: %s, want %s as sshd %s (probes %q)", vpn, vpnWant, e.o.Version, c.probes)
	}
}

// login connects from the source address, offers signer as root, and on
// success runs the probes; it returns "refused" or a letter per probe.
func (e *authOracle) login(t *testing.T, server, from string, signer ssh.Signer, probes []string) string {
	var conn net.Conn
	var err error
	e.ns.Do(t, func() {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
		conn, err = d.Dial("tcp", server)
	})
	if err != nil {
		t.Fatalf("dial %s from %s: %v", server, from, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Minute))
	cc, chans, reqs, err := ssh.NewClientConn(conn, server, &ssh.ClientConfig{User: "root",
		Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.InsecureIgnoreHostKey()})
	if err != nil {
		if strings.Contains(err.Error(), "unable to authenticate") {
			return "refused"
		}
		t.Fatalf("login to %s from %s: %v", server, from, err)
	}
	conn.SetDeadline(time.Time{})
	c := ssh.NewClient(cc, chans, reqs)
	defer c.Close()
	var out strings.Builder
	for _, p := range probes {
		ok, err := probe(c, p)
		if err != nil {
			t.Fatalf("%s on %s: %v", p, server, err)
		}
		out.WriteByte("ny"[btoi(ok)])
	}
	return out.String()
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// probe opens the channel a probe names and closes it again. A refusal
// is an open failure whose reason is a refusal's: administratively
// prohibited for a forward (a connection failure means the target is
// unreachable, which breaks the test), any for a tunnel (sshd answers a
// refused tunnel with "open failed", reason connect failed).
func probe(c *ssh.Client, p string) (bool, error) {
	kind, arg, _ := strings.Cut(p, ":")
	var ch ssh.Channel
	var reqs <-chan *ssh.Request
	var err error
	switch kind {
	case "fwd":
		ch, reqs, err = c.OpenChannel("direct-tcpip", ssh.Marshal(struct {
			Host       string
			Port       uint32
			OriginHost string
			OriginPort uint32
		}{arg, oracleTarget, "127.0.0.1", 40000}))
	case "tun":
		unit := relay.AnyUnit
		if arg != "any" {
			var u uint32
			fmt.Sscan(arg, &u)
			unit = u
		}
		ch, reqs, err = openTunnelChannel(c, unit)
	default:
		return false, fmt.Errorf("unknown probe %q", p)
	}
	var oe *ssh.OpenChannelError
	switch {
	case err == nil:
		go ssh.DiscardRequests(reqs)
		ch.Close()
		return true, nil
	case errors.As(err, &oe) && (kind == "tun" || oe.Reason == ssh.Prohibited):
		return false, nil
	}
	return false, err
}

func openTunnelChannel(c *ssh.Client, unit uint32) (ssh.Channel, <-chan *ssh.Request, error) {
	return c.OpenChannel("tun@openssh.com", ssh.Marshal(struct{ Mode, Unit uint32 }{uint32(relay.PointToPoint), unit}))
}

// checkLines are authorized_keys lines, {K} a key, that sshd or sshvpn may
// skip: serve --check must name every line sshd skips, and skip no other
// but those of checkStricter.
var checkLines = []string{
	`{K}`,                                               // 1
	`tunnel="x" {K}`,                                    // 2
	`expiry-time="2026" {K}`,                            // 3
	`permitopen="nohost" {K}`,                           // 4
	`form="198.18.0.1" {K}`,                             // 5
	`from="198.18.0.1 {K}`,                              // 6
	`no-pty,restrict,pty {K}`,                           // 7
	`ssh-ed25519 AAAAnotbase64`,                         // 8
	`environment="NOEQUALS" {K}`,                        // 9
	`command="a",command="b" {K}`,                       // 10
	`from="198.18.0.1",from="198.18.0.2" {K}`,           // 11
	`tunnel="any",expiry-time="20300101" {K}`,           // 12
	`Cert-Authority,No-Pty {K}`,                         // 13
	`principals="x" {K}`,                                // 14
	`verify-required {K}`,                               // 15
	`environment="SSHVPN_X=1" {K}`,                      // 16
	`tunnel="0x10" {K}`,                                 // 17
	`expiry-time="20301301" {K}`,                        // 18
	`permitopen="host:*",permitlisten="7000" {K}`,       // 19
	`no-touch-required,no-user-rc,agent-forwarding {K}`, // 20
}

// checkStricter are lines sshd takes and sshvpn skips on purpose: a
// principals= without cert-authority lets nothing log in through sshd
// either, a FIDO requirement sshvpn cannot check, and a misspelt sshvpn
// setting that must not drop a restriction silently.
var checkStricter = map[int]bool{14: true, 15: true, 16: true}

// sshdSkips reads sshd's debug log for the authorized_keys lines it
// skipped: options it refused ("bad key options"), no key where one should
// be ("advance"), or options it could not even delimit, which it reports
// on a line of its own after the line's "check options".
func sshdSkips(log string) map[int]bool {
	at := regexp.MustCompile(`authorized_keys:(\d+): (check options|bad key options|advance)`)
	skipped, cur := map[int]bool{}, 0
	for _, l := range strings.Split(log, "\n") {
		if m := at.FindStringSubmatch(l); m != nil {
			cur, _ = strconv.Atoi(m[1])
			if m[2] != "check options" {
				skipped[cur] = true
			}
		} else if strings.Contains(l, "invalid key option string") {
			skipped[cur] = true
		}
	}
	return skipped
}

// CheckAuthorizedKeys (serve --check) and sshd skip the same lines. sshd
// parses every line's options before it compares the key, so one login
// with a key on no line makes it judge, and log, each line.
func TestCheckAuthorizedKeysMatchesSSHD(t *testing.T) {
	nstest.RequireRoot(t)
	for _, o := range nstest.OpenSSHs(t) {
		t.Run(o.Version, func(t *testing.T) {
			dir := t.TempDir()
			runKeygen(t, o, "-q", "-N", "", "-t", "ed25519", "-f", filepath.Join(dir, "k"))
			content := strings.ReplaceAll(strings.Join(checkLines, "\n")+"\n", "{K}", keyField(t, filepath.Join(dir, "k.pub")))
			ns := nstest.New(t)
			sshd := o.StartSSHD(t, ns, nstest.SSHDConfig{ListenAddr: oracleSSHD, Extra: []string{"LogLevel DEBUG2"}})
			path := filepath.Join(filepath.Dir(sshd.ConfigPath), "authorized_keys")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			stranger := gatewaytest.NewSigner(t)
			c, err := ns.Dial(t, "tcp", oracleSSHD)
			if err != nil {
				t.Fatal(err)
			}
			_, _, _, err = ssh.NewClientConn(c, oracleSSHD, &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(stranger)},
				HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
			if err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
				t.Fatalf("a key on no line: %v, want a refusal", err)
			}
			c.Close()
			nstest.WaitFor(t, 5*time.Second, "sshd to read the file", func() bool {
				return strings.Contains(sshd.Log(), fmt.Sprintf("authorized_keys:%d", len(checkLines)))
			})
			skipped := sshdSkips(sshd.Log())
			_, ours, err := gateway.CheckAuthorizedKeys(path)
			if err != nil {
				t.Fatal(err)
			}
			mine := map[int]bool{}
			for _, le := range ours {
				mine[le.Line] = true
			}
			for n := 1; n <= len(checkLines); n++ {
				switch {
				case skipped[n] && !mine[n]:
					t.Errorf("line %d %q: sshd skips it, serve --check does not", n, checkLines[n-1])
				case mine[n] && !skipped[n] && !checkStricter[n]:
					t.Errorf("line %d %q: serve --check skips it, sshd does not", n, checkLines[n-1])
				case !mine[n] && checkStricter[n]:
					t.Errorf("line %d %q: serve --check takes it; sshvpn means to skip it", n, checkLines[n-1])
				}
			}
			if t.Failed() {
				t.Logf("sshd's log:\n%s", sshd.Log())
			}
		})
	}
}
