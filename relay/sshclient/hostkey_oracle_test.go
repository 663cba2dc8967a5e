package sshclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// The differential test of host certificates: stock ssh is the oracle.
// An sshd in a namespace presents a host certificate made by ssh-keygen -s
// on ports 22 and 2022; for each known_hosts file and StrictHostKeyChecking
// mode, ssh and sshvpn's Dialer connect from another namespace, each with
// its own copy of the file. They must both accept the host or both refuse
// it, leave byte-identical files, and print the same "Certificate ..."
// lines.
//
// Accepting the host is what is compared, so the clients offer no key and
// stop at "Permission denied": a session per case would cost ten times
// more. One case (a valid certificate, "@cert-authority *" and
// port 2022) logs in for real on both sides and runs a command.
//
// ssh runs with a forwarding (-L of a unix socket, which opens no channel
// until someone connects) and ExitOnForwardFailure: where ssh would connect
// with forwarding disabled (a changed or revoked key under
// StrictHostKeyChecking=no) it then refuses, as sshvpn, which only ever
// wants its tunnel, does.

const (
	oracleServer = "198.18.1.2"
	oracleAlias  = "alias.example"
)

// oracleRunTimeout bounds one run of ssh or of Dial. It turns a hung run
// into a failure and says nothing of speed: a login runs root's shell and
// its rc files (bash reads ~/.bashrc when sshd starts it), seconds even
// alone, and several at once on a loaded machine outlasted a 15 s bound.
const oracleRunTimeout = 2 * time.Minute

// oracleModes are the StrictHostKeyChecking values, in the order of the
// letters of oracleCase.want. ask runs with BatchMode, so it cannot prompt.
var oracleModes = []string{"yes", "accept-new", "no", "ask"}

// certVariant is one host certificate the sshd presents.
type certVariant struct {
	name       string
	principals string // ssh-keygen -n
	validity   string // ssh-keygen -V
	message    string // the "Certificate ..." line ssh prints when a CA line accepts the signer
	cases      []oracleCase
}

// oracleCase is one known_hosts file. want holds, for port 22 and then
// port 2022, one letter per mode of oracleModes: c accepts the host with the
// file unchanged, a accepts it after adding the plain key, f refuses. It states
// what ssh does (the differential assertion is separate) so that a test
// where both sides always fail cannot pass.
type oracleCase struct {
	name  string
	lines []string // known_hosts lines, with {CA} {CA2} {HOST} {OTHER} {H22} {H2022}
	opts  []string // more -o options for both clients
	want  [2]string
	// sshvpn, when set, is what sshvpn does where it deliberately differs
	// from ssh 9.2 and 10.0 (see hostKeyChecker).
	sshvpn [2]string
	// login makes both clients log in with a key and ssh run a command.
	login bool
	// cert says, per port, whether ssh prints the variant's "Certificate
	// ..." line.
	cert [2]bool
}

var both = [2]bool{true, true}

var certVariants = []certVariant{{
	name: "valid", principals: oracleServer + "," + oracleAlias, validity: "-5m:+1d",
	cases: []oracleCase{
		{name: "no CA line", lines: []string{"# nothing"}, want: [2]string{"faaf", "faaf"}},
		{name: "no CA line, HashKnownHosts", lines: []string{"# nothing"}, opts: []string{"HashKnownHosts=yes"},
			want: [2]string{"faaf", "faaf"}},
		{name: "star", lines: []string{"@cert-authority * {CA}"}, want: [2]string{"cccc", "cccc"}, login: true},
		{name: "question mark", lines: []string{"@cert-authority 198.18.1.? {CA}"}, want: [2]string{"cccc", "cccc"}},
		{name: "bare host", lines: []string{"@cert-authority " + oracleServer + " {CA}"}, want: [2]string{"cccc", "cccc"}},
		{name: "negated", lines: []string{"@cert-authority !" + oracleServer + ",* {CA}"}, want: [2]string{"faaf", "cccc"}},
		{name: "bracketed port", lines: []string{"@cert-authority [" + oracleServer + "]:2022 {CA}"}, want: [2]string{"faaf", "cccc"}},
		{name: "prefix, broken line, hashed host", lines: []string{"@cert-authority 198.18.0.* {CA}",
			"@cert-authority " + oracleServer, "@cert-authority {H22} {CA}"}, want: [2]string{"cccc", "cccc"}},
		{name: "hashed host and port", lines: []string{"@cert-authority {H2022} {CA}"}, want: [2]string{"faaf", "cccc"}},
		{name: "other CA", lines: []string{"@cert-authority * {CA2}"}, want: [2]string{"faaf", "faaf"}},
		{name: "CA revoked", lines: []string{"@cert-authority * {CA}", "@revoked * {CA}"}, want: [2]string{"ffff", "ffff"}},
		{name: "host key revoked", lines: []string{"@cert-authority * {CA}", "@revoked * {HOST}"}, want: [2]string{"ffff", "ffff"}},
		{name: "plain key known without port", lines: []string{oracleServer + " {HOST}"}, want: [2]string{"cccc", "cccc"}},
		{name: "other plain key and CA", lines: []string{"* {OTHER}", "@cert-authority * {CA}"}, want: [2]string{"cccc", "cccc"}},
		{name: "changed plain key", lines: []string{oracleServer + ",[" + oracleServer + "]:2022 {OTHER}"}, want: [2]string{"ffff", "ffff"}},
		{name: "plain key revoked without port", lines: []string{"@revoked " + oracleServer + " {HOST}"},
			want: [2]string{"ffff", "faff"}, sshvpn: [2]string{"", "ffff"}},
		{name: "alias", lines: []string{"@cert-authority " + oracleAlias + " {CA}"}, opts: []string{"HostKeyAlias=" + oracleAlias},
			want: [2]string{"cccc", "cccc"}},
		{name: "alias not named", lines: []string{"@cert-authority " + oracleServer + " {CA}"}, opts: []string{"HostKeyAlias=" + oracleAlias},
			want: [2]string{"faaf", "faaf"}},
	},
}, {
	name: "other principal", principals: "other.example", validity: "-5m:+1d",
	message: "Certificate invalid: name is not a listed principal",
	cases: []oracleCase{
		{name: "star", lines: []string{"@cert-authority * {CA}"}, want: [2]string{"faaf", "faaf"}, cert: both},
		{name: "star and plain key", lines: []string{"@cert-authority * {CA}", oracleServer + ",[" + oracleServer + "]:2022 {HOST}"},
			want: [2]string{"cccc", "cccc"}, cert: both},
		{name: "alias", lines: []string{"@cert-authority * {CA}"}, opts: []string{"HostKeyAlias=" + oracleAlias},
			want: [2]string{"faaf", "faaf"}, cert: both},
	},
}, {
	name: "expired", principals: oracleServer, validity: "20200101:20200201",
	message: "Certificate invalid: expired",
	cases: []oracleCase{
		{name: "star", lines: []string{"@cert-authority * {CA}"}, want: [2]string{"faaf", "faaf"}, cert: both},
		{name: "bare host", lines: []string{"@cert-authority " + oracleServer + " {CA}"}, want: [2]string{"faaf", "faaf"}, cert: both},
	},
}, {
	name: "not yet valid", principals: oracleServer, validity: "+1d:+2d",
	message: "Certificate invalid: not yet valid",
	cases: []oracleCase{
		{name: "star", lines: []string{"@cert-authority * {CA}"}, want: [2]string{"faaf", "faaf"}, cert: both},
		{name: "bracketed port", lines: []string{"@cert-authority [" + oracleServer + "]:2022 {CA}"}, want: [2]string{"faaf", "faaf"},
			cert: [2]bool{false, true}},
	},
}}

// oracleEnv is what every case of one OpenSSH generation shares.
type oracleEnv struct {
	o        nstest.OpenSSH
	client   *nstest.NS
	server   *nstest.NS
	dir      string
	id       string // the client's private key
	idPub    string
	hostKey  string // the host's private key
	subst    *strings.Replacer
	parallel chan struct{} // bounds the cases run at once, over every generation
}

func TestHostCertificatesMatchSSH(t *testing.T) {
	nstest.RequireRoot(t)
	// One case at a time per core, whichever generation it belongs to:
	// each runs ssh, sshd and the race-instrumented Dial, all CPU.
	parallel := make(chan struct{}, runtime.GOMAXPROCS(0))
	for _, o := range nstest.OpenSSHs(t) {
		t.Run(o.Version, func(t *testing.T) {
			t.Parallel()
			e := newOracleEnv(t, o, parallel)
			for _, v := range certVariants {
				t.Run(v.name, func(t *testing.T) { e.runVariant(t, v) })
			}
		})
	}
}

func newOracleEnv(t *testing.T, o nstest.OpenSSH, parallel chan struct{}) *oracleEnv {
	client, server := nstest.New(t), nstest.New(t)
	nstest.Link(t, client, netip.MustParsePrefix("198.18.1.1/24"), server, netip.MustParsePrefix(oracleServer+"/24"))
	e := &oracleEnv{o: o, client: client, server: server, dir: t.TempDir(), parallel: parallel}
	var caPub, ca2Pub, hostPub string
	e.id, e.idPub = o.Keygen(t, e.dir, "id")
	_, caPub = o.Keygen(t, e.dir, "ca")
	_, ca2Pub = o.Keygen(t, e.dir, "ca2")
	_, otherPub := o.Keygen(t, e.dir, "other")
	e.hostKey, hostPub = o.Keygen(t, e.dir, "host")
	e.subst = strings.NewReplacer(
		"{CA}", keyField(caPub), "{CA2}", keyField(ca2Pub), "{HOST}", keyField(hostPub), "{OTHER}", keyField(otherPub),
		"{H22}", knownhosts.HashHostname(oracleServer),
		"{H2022}", knownhosts.HashHostname("["+oracleServer+"]:2022"))
	return e
}

// keyField drops the comment of an authorized_keys line: "type base64".
func keyField(pub string) string {
	f := strings.Fields(pub)
	return f[0] + " " + f[1]
}

// startSSHD runs an sshd presenting the variant's certificate on ports 22
// and 2022 until the variant's subtest ends.
func (e *oracleEnv) startSSHD(t *testing.T, v certVariant) {
	dir := t.TempDir()
	pub, err := os.ReadFile(e.hostKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "host.pub"), string(pub))
	runTool(t, e.o.SSHKeygen, "-q", "-s", filepath.Join(e.dir, "ca"), "-I", "oracle-"+v.name, "-h",
		"-n", v.principals, "-V", v.validity, filepath.Join(dir, "host.pub"))
	e.o.StartSSHD(t, e.server, nstest.SSHDConfig{
		ListenAddr:     oracleServer + ":22",
		AuthorizedKeys: e.idPub + "\n",
		// The first HostKey of a type is the one sshd uses; the key
		// StartSSHD makes comes after these.
		Extra: []string{"HostKey " + e.hostKey, "HostCertificate " + filepath.Join(dir, "host-cert.pub"),
			"ListenAddress " + oracleServer + ":2022"},
	})
}

func runTool(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (e *oracleEnv) runVariant(t *testing.T, v certVariant) {
	e.startSSHD(t, v)
	var wg sync.WaitGroup
	for _, c := range v.cases {
		for pi, port := range []int{22, 2022} {
			for mi, mode := range oracleModes {
				name := fmt.Sprintf("%s/port=%d/%s", c.name, port, mode)
				want, vpnWant := c.want[pi][mi], c.want[pi][mi]
				if c.sshvpn[pi] != "" {
					vpnWant = c.sshvpn[pi][mi]
				}
				wg.Add(1)
				e.parallel <- struct{}{}
				go func() {
					defer wg.Done()
					defer func() { <-e.parallel }()
					t.Run(name, func(t *testing.T) { e.runCase(t, v, c, port, mode, want, vpnWant) })
				}()
			}
		}
	}
	wg.Wait()
}

// outcome is what one client did.
type outcome struct {
	ok         bool
	knownHosts string
	certLines  []string
	stderr     string
}

func (o outcome) letter(before string) byte {
	switch {
	case !o.ok:
		return 'f'
	case o.knownHosts == before:
		return 'c'
	}
	return 'a'
}

func (e *oracleEnv) runCase(t *testing.T, v certVariant, c oracleCase, port int, mode string, want, vpnWant byte) {
	dir := t.TempDir()
	content := e.subst.Replace(strings.Join(c.lines, "\n") + "\n")
	opts := append([]string{
		"GlobalKnownHostsFile=/dev/null", "StrictHostKeyChecking=" + mode, "BatchMode=yes", "IdentitiesOnly=yes",
	}, c.opts...)

	sshFile := writeFile(t, filepath.Join(dir, "ssh_known_hosts"), content)
	got := e.runSSH(t, port, c.login, append(opts, "UserKnownHostsFile="+sshFile))
	vpnFile := writeFile(t, filepath.Join(dir, "sshvpn_known_hosts"), content)
	vpn := e.runDial(t, port, c.login, append(opts, "UserKnownHostsFile="+vpnFile))

	fail := func(format string, a ...any) {
		t.Errorf(format+"\nknown_hosts:\n%s\nssh (ok=%v):\n%s\nsshvpn (ok=%v):\n%s",
			append(a, content, got.ok, got.stderr, vpn.ok, vpn.stderr)...)
	}
	if l := got.letter(content); l != want {
		fail("ssh: %c, the case says %c", l, want)
	}
	if l := vpn.letter(content); l != vpnWant {
		fail("sshvpn: %c, want %c", l, vpnWant)
	}
	if want != vpnWant {
		return // a deliberate difference: only the letters are compared
	}
	if a, b := unhash(got.knownHosts), unhash(vpn.knownHosts); a != b {
		fail("known_hosts differ:\nssh:\n%s\nsshvpn:\n%s", a, b)
	}
	if !slices.Equal(got.certLines, vpn.certLines) {
		fail("Certificate lines differ: ssh %q, sshvpn %q", got.certLines, vpn.certLines)
	}
	if wantLine := c.cert[portIndex(port)] && v.message != ""; wantLine != slices.Contains(got.certLines, v.message) {
		fail("ssh's Certificate lines %q; the case expects %q: %v", got.certLines, v.message, wantLine)
	}
}

// unhash replaces each hashed host name (random salt: never the same bytes
// twice) by the name it hashes, found among the names the test uses.
func unhash(file string) string {
	lines := strings.Split(file, "\n")
	for i, l := range lines {
		f := strings.SplitN(l, " ", 2)
		salt, err := hashSalt(f[0])
		if err != nil || len(f) < 2 {
			continue
		}
		name := "?"
		for _, n := range []string{oracleServer, "[" + oracleServer + "]:2022", oracleAlias} {
			if hashHostWithSalt(n, salt) == f[0] {
				name = n
			}
		}
		lines[i] = "(hashed " + name + ") " + f[1]
	}
	return strings.Join(lines, "\n")
}

func portIndex(port int) int {
	if port == 22 {
		return 0
	}
	return 1
}

// runSSH runs ssh; with login it authenticates and runs true, else it
// offers no key and the host counts as accepted when ssh gets as far as
// "Permission denied".
func (e *oracleEnv) runSSH(t *testing.T, port int, login bool, opts []string) outcome {
	args := []string{e.o.SSH, "-F", "none", "-p", strconv.Itoa(port),
		"-o", "UpdateHostKeys=no", "-o", "ConnectTimeout=" + strconv.Itoa(int(oracleRunTimeout/time.Second)), "-o", "LogLevel=INFO",
		"-L", filepath.Join(t.TempDir(), "fwd.sock") + ":127.0.0.1:9", "-o", "ExitOnForwardFailure=yes"}
	if login {
		args = append(args, "-i", e.id)
	} else {
		args = append(args, "-o", "PubkeyAuthentication=no")
	}
	for _, o := range opts {
		args = append(args, "-o", o)
	}
	args = append(args, "root@"+oracleServer, "true")
	ctx, cancel := context.WithTimeout(context.Background(), oracleRunTimeout)
	defer cancel()
	cmd := e.client.Cmd(args...)
	cmd = exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s: %v", strings.Join(args, " "), ctx.Err())
	}
	ok := err == nil
	if !login {
		ok = strings.Contains(stderr.String(), "Permission denied (")
		if err == nil {
			t.Fatalf("ssh logged in without a key:\n%s", stderr.String())
		}
	}
	return e.outcome(t, ok, stderr.String(), opts)
}

// runDial runs Dialer.Dial; without login it offers no key, and the host
// counts as accepted when authentication is what failed.
func (e *oracleEnv) runDial(t *testing.T, port int, login bool, opts []string) outcome {
	o := Options{Destination: "root@" + oracleServer, Port: port, ConfigFile: "none", Opts: opts}
	if login {
		o.Identities = []string{e.id}
	}
	cfg, err := resolve(o, testEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	d := &Dialer{Stderr: &stderr, AgentSocket: "none"}
	ctx, cancel := context.WithTimeout(context.Background(), oracleRunTimeout)
	defer cancel()
	e.client.Do(t, func() {
		c, derr := d.Dial(ctx, cfg)
		if c != nil {
			c.Close()
		}
		err = derr
	})
	if ctx.Err() != nil {
		t.Fatalf("Dial: %v", err)
	}
	ok := err == nil
	if err != nil {
		fmt.Fprintf(&stderr, "(Dial: %v)\n", err)
		ok = !login && !errors.Is(err, ErrHostKeyVerification) &&
			(strings.Contains(err.Error(), "Permission denied (") || strings.Contains(err.Error(), "unable to authenticate"))
	}
	if !login && err == nil {
		t.Fatal("Dial logged in without a key")
	}
	return e.outcome(t, ok, stderr.String(), opts)
}

func (e *oracleEnv) outcome(t *testing.T, ok bool, stderr string, opts []string) outcome {
	var file string
	for _, o := range opts {
		if f, found := strings.CutPrefix(o, "UserKnownHostsFile="); found {
			file = f
		}
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	out := outcome{ok: ok, knownHosts: string(data), stderr: stderr}
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "Certificate ") {
			out.certLines = append(out.certLines, strings.TrimRight(l, "\r"))
		}
	}
	return out
}
