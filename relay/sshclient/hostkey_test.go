package sshclient

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// fakePrompter answers prompts from a script and records them.
type fakePrompter struct {
	answers []string
	prompts []string
}

func (f *fakePrompter) next(p string) (string, error) {
	f.prompts = append(f.prompts, p)
	if len(f.answers) == 0 {
		return "", errors.New("no more answers")
	}
	a := f.answers[0]
	f.answers = f.answers[1:]
	return a, nil
}

func (f *fakePrompter) ReadSecret(p string) (string, error) { return f.next(p) }
func (f *fakePrompter) ReadLine(p string) (string, error)   { return f.next(p) }

func hostKeyCfg(t *testing.T, strict string, hash bool) *Config {
	dir := t.TempDir()
	return &Config{
		HostName: "198.18.1.1", Port: 2222, StrictHostKeyChecking: strict, HashKnownHosts: hash,
		UserKnownHostsFiles: []string{filepath.Join(dir, "sub", "known_hosts"), filepath.Join(dir, "known_hosts2")},
	}
}

var remoteAddr = &net.TCPAddr{IP: net.IPv4(198, 18, 1, 1), Port: 2222}

func TestHostKeyUnknownStrict(t *testing.T) {
	for _, mode := range []string{"yes", "ask"} { // ask without a terminal fails, as ssh's confirm() does
		var stderr bytes.Buffer
		cfg := hostKeyCfg(t, mode, false)
		h := newHostKeyChecker(cfg, &Dialer{Stderr: &stderr})
		err := h.check("", remoteAddr, newSigner(t).PublicKey())
		if !errors.Is(err, ErrHostKeyVerification) {
			t.Fatalf("%s: err = %v", mode, err)
		}
		want := "No ED25519 host key is known for [198.18.1.1]:2222 and you have requested strict checking.\n" +
			"Host key verification failed.\n"
		if mode == "ask" {
			want = "Host key verification failed.\n"
		}
		eq(t, mode+" stderr", stderr.String(), want)
		if _, err := os.Stat(cfg.UserKnownHostsFiles[0]); err == nil {
			t.Errorf("%s: known_hosts was written", mode)
		}
	}
}

func TestHostKeyAcceptNew(t *testing.T) {
	for _, tc := range []struct {
		mode string
		hash bool
	}{{"accept-new", false}, {"accept-new", true}, {"no", false}} {
		var stderr bytes.Buffer
		cfg := hostKeyCfg(t, tc.mode, tc.hash)
		key := newSigner(t).PublicKey()
		h := newHostKeyChecker(cfg, &Dialer{Stderr: &stderr})
		if err := h.check("", remoteAddr, key); err != nil {
			t.Fatalf("%+v: %v", tc, err)
		}
		eq(t, "stderr", stderr.String(),
			"Warning: Permanently added '[198.18.1.1]:2222' (ED25519) to the list of known hosts.\n")
		file := cfg.UserKnownHostsFiles[0]
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		line := string(data)
		if tc.hash != strings.HasPrefix(line, "|1|") || strings.Contains(line, "198.18") == tc.hash {
			t.Errorf("%+v: line %q", tc, line)
		}
		if !tc.hash {
			eq(t, "line", line, knownhosts.Line([]string{"198.18.1.1:2222"}, key)+"\n")
		}
		for path, perm := range map[string]os.FileMode{file: 0o600, filepath.Dir(file): 0o700 | os.ModeDir} {
			if st, err := os.Stat(path); err != nil || st.Mode() != perm {
				t.Errorf("%s: mode %v, want %v", path, st.Mode(), perm)
			}
		}
		// The added line is found again, hashed or not.
		stderr.Reset()
		cfg.StrictHostKeyChecking = "yes"
		if err := newHostKeyChecker(cfg, &Dialer{Stderr: &stderr}).check("", remoteAddr, key); err != nil {
			t.Errorf("%+v: second check: %v (%s)", tc, err, stderr.String())
		}
	}
}

func TestHostKeyAskOnTerminal(t *testing.T) {
	key := newSigner(t).PublicKey()
	fp := ssh.FingerprintSHA256(key)
	for _, tc := range []struct {
		answers []string
		ok      bool
	}{{[]string{"maybe", " yes  "}, true}, {[]string{fp}, true}, {[]string{"no"}, false}, {[]string{""}, false}} {
		var stderr bytes.Buffer
		cfg := hostKeyCfg(t, "ask", false)
		p := &fakePrompter{answers: tc.answers}
		err := newHostKeyChecker(cfg, &Dialer{Stderr: &stderr, Prompt: p}).check("", remoteAddr, key)
		if (err == nil) != tc.ok {
			t.Errorf("%q: err = %v", tc.answers, err)
		}
		want := "The authenticity of host '[198.18.1.1]:2222 ([198.18.1.1]:2222)' can't be established.\n" +
			"ED25519 key fingerprint is: " + fp + "\n" +
			"This key is not known by any other names.\n" +
			"Are you sure you want to continue connecting (yes/no/[fingerprint])? "
		eq(t, "prompt", p.prompts[0], want)
		if len(tc.answers) > 1 {
			eq(t, "second prompt", p.prompts[1], "Please type 'yes', 'no' or the fingerprint: ")
		}
		_, statErr := os.Stat(cfg.UserKnownHostsFiles[0])
		eq(t, "written", statErr == nil, tc.ok)
	}
}

// The question names the other lines that hold the same key, as ssh's does.
func TestHostKeyAskShowsOtherNames(t *testing.T) {
	key := newSigner(t).PublicKey()
	cfg := hostKeyCfg(t, "ask", false)
	file := writeFile(t, cfg.UserKnownHostsFiles[1], "old-name.example,198.18.1.9 "+authorizedKey(key)+"\n")
	p := &fakePrompter{answers: []string{"no"}}
	newHostKeyChecker(cfg, &Dialer{Prompt: p}).check("", remoteAddr, key)
	if len(p.prompts) != 1 || !strings.Contains(p.prompts[0],
		"\nThis host key is known by the following other names/addresses:\n    "+file+":1: old-name.example,198.18.1.9\nAre you sure") {
		t.Errorf("prompts: %q", p.prompts)
	}
}

func TestHostKeyChanged(t *testing.T) {
	for _, mode := range []string{"yes", "accept-new", "no", "ask"} {
		cfg := hostKeyCfg(t, mode, false)
		file := cfg.UserKnownHostsFiles[0]
		old := newSigner(t).PublicKey()
		content := "# known hosts\nother.example " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(newSigner(t).PublicKey()))) +
			"\n" + knownhosts.Line([]string{"198.18.1.1:2222"}, old) + "\nno-newline-at-end.example " +
			strings.TrimSpace(string(ssh.MarshalAuthorizedKey(newSigner(t).PublicKey())))
		writeFile(t, file, content)
		before, _ := os.ReadFile(file)
		stat0, _ := os.Stat(file)

		var stderr bytes.Buffer
		key := newSigner(t).PublicKey()
		err := newHostKeyChecker(cfg, &Dialer{Stderr: &stderr, Prompt: &fakePrompter{answers: []string{"yes"}}}).check("", remoteAddr, key)
		if !errors.Is(err, ErrHostKeyVerification) {
			t.Fatalf("%s: err = %v", mode, err)
		}
		want := fmt.Sprintf(`@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
Someone could be eavesdropping on you right now (man-in-the-middle attack)!
It is also possible that a host key has just been changed.
The fingerprint for the ED25519 key sent by the remote host is
%s.
Please contact your system administrator.
Add correct host key in %s to get rid of this message.
Offending ED25519 key in %s:3
%s
Host key verification failed.
`, ssh.FingerprintSHA256(key), file, file, changedLine(mode))
		eq(t, mode+" warning", stderr.String(), want)
		after, _ := os.ReadFile(file)
		stat1, _ := os.Stat(file)
		if !bytes.Equal(before, after) || !stat0.ModTime().Equal(stat1.ModTime()) || stat0.Mode() != stat1.Mode() {
			t.Errorf("%s: known_hosts changed", mode)
		}
		if _, err := os.Stat(cfg.UserKnownHostsFiles[1]); err == nil {
			t.Errorf("%s: second known_hosts file created", mode)
		}
	}
}

func TestHostKeyRevoked(t *testing.T) {
	cfg := hostKeyCfg(t, "no", false)
	key := newSigner(t).PublicKey()
	writeFile(t, cfg.UserKnownHostsFiles[0], "@revoked * "+string(ssh.MarshalAuthorizedKey(key)))
	var stderr bytes.Buffer
	err := newHostKeyChecker(cfg, &Dialer{Stderr: &stderr}).check("", remoteAddr, key)
	if !errors.Is(err, ErrHostKeyVerification) || !strings.Contains(stderr.String(), "WARNING: REVOKED HOST KEY DETECTED!") {
		t.Fatalf("err = %v, stderr:\n%s", err, stderr.String())
	}
}

func TestHostKeyAlgorithms(t *testing.T) {
	rsa := func(t *testing.T) ssh.PublicKey {
		t.Helper()
		k, err := ssh.ParsePublicKey(mustDecode(t, strings.Fields(testRSAPub)[1]))
		if err != nil {
			t.Fatal(err)
		}
		return k
	}(t)
	def := defaultHostKeyAlgorithms()
	for _, tc := range []struct {
		name  string
		lines string
		first []string // the algorithms moved to the front; nil: the default order
	}{
		{"unknown host", "", nil},
		{"ed25519 known", "[198.18.1.1]:2222 " + authorizedKey(newSigner(t).PublicKey()), nil},
		{"rsa known", "[198.18.1.1]:2222 " + authorizedKey(rsa),
			[]string{ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}},
		{"rsa known and a CA", "[198.18.1.1]:2222 " + authorizedKey(rsa) + "\n@cert-authority * " + authorizedKey(newSigner(t).PublicKey()),
			[]string{ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01,
				ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}},
		{"rsa known without the port", "198.18.1.1 " + authorizedKey(rsa), nil}, // ssh orders by the name with the port only
	} {
		cfg := hostKeyCfg(t, "yes", false)
		writeFile(t, cfg.UserKnownHostsFiles[0], tc.lines+"\n")
		got := newHostKeyChecker(cfg, &Dialer{}).algorithms()
		want := def
		if tc.first != nil {
			want = append([]string(nil), tc.first...)
			for _, a := range def {
				if !slices.Contains(tc.first, a) {
					want = append(want, a)
				}
			}
		}
		eq(t, tc.name, got, want)
	}
	eq(t, "defaults", def[:2], []string{ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01})
}

// testRSAPub is a 1024-bit RSA key: only its public half is needed.
const testRSAPub = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDiW0VHkzMK1y3SH3709XCfse1cn9mF11arzbwz6t9g0o4JwGQOgOxJPtyUzyUppqaxGB4/XjzbgRVdzEZidEEi7TD4woeSqyGi+X5wTqQYlqAgVOWSO6dRjbMeuo4heL8T60PgC+m8eEU15VexxrAyqKgovliJ2wMETar1xmQOAQ=="

func mustDecode(t *testing.T, b64 string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A host certificate from a CA nobody trusts falls back to its plain key,
// as ssh does: known as a plain key, it passes; unknown, it fails as an
// unknown host would.
func TestHostKeyCertificateFallsBackToPlainKey(t *testing.T) {
	host, ca := newSigner(t), newSigner(t)
	cert := &ssh.Certificate{Key: host.PublicKey(), CertType: ssh.HostCert, ValidPrincipals: []string{"198.18.1.1"},
		ValidBefore: ssh.CertTimeInfinity}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	cfg := hostKeyCfg(t, "yes", false)
	var stderr bytes.Buffer
	h := newHostKeyChecker(cfg, &Dialer{Stderr: &stderr})
	if err := h.check("", remoteAddr, cert); !errors.Is(err, ErrHostKeyVerification) {
		t.Fatalf("unknown certified host: %v", err)
	}
	os.MkdirAll(filepath.Dir(cfg.UserKnownHostsFiles[0]), 0o700)
	line := knownhosts.Line([]string{"[198.18.1.1]:2222"}, host.PublicKey())
	os.WriteFile(cfg.UserKnownHostsFiles[0], []byte(line+"\n"), 0o600)
	if err := h.check("", remoteAddr, cert); err != nil {
		t.Fatalf("a certificate over a known plain key was refused: %v", err)
	}
}

// signCert signs c by hand (x/crypto's SignCert refuses a certificate
// without principals) with the given signature algorithm ("" for the
// key's default).
func signCert(t *testing.T, c *ssh.Certificate, ca ssh.Signer, alg string) *ssh.Certificate {
	t.Helper()
	c.Nonce = make([]byte, 32)
	rand.Read(c.Nonce)
	c.SignatureKey = ca.PublicKey()
	c.Signature = nil
	data := c.Marshal()
	data = data[:len(data)-4] // the empty signature string
	var sig *ssh.Signature
	var err error
	if alg != "" {
		sig, err = ca.(ssh.AlgorithmSigner).SignWithAlgorithm(rand.Reader, data, alg)
	} else {
		sig, err = ca.Sign(rand.Reader, data)
	}
	if err != nil {
		t.Fatal(err)
	}
	c.Signature = sig
	return c
}

// TestHostCertificate runs check on certificates for [198.18.1.1]:2222:
// sshkey_cert_check_host's reasons, in its order, then the plain key.
func TestHostCertificate(t *testing.T) {
	host, ca := newSigner(t), newSigner(t)
	now := time.Unix(1_800_000_000, 0)
	hostCert := func(mod func(c *ssh.Certificate)) *ssh.Certificate {
		c := &ssh.Certificate{Key: host.PublicKey(), CertType: ssh.HostCert, ValidPrincipals: []string{"198.18.1.1"},
			ValidAfter: uint64(now.Unix()) - 60, ValidBefore: uint64(now.Unix()) + 60}
		if mod != nil {
			mod(c)
		}
		return signCert(t, c, ca, "")
	}
	caLine := "@cert-authority * " + authorizedKey(ca.PublicKey())
	plainLine := "[198.18.1.1]:2222 " + authorizedKey(host.PublicKey())
	for _, tc := range []struct {
		name  string
		cert  *ssh.Certificate
		lines []string
		alias string
		msg   string // the "Certificate ..." line; "" for none
		ok    bool
	}{
		{name: "valid", cert: hostCert(nil), lines: []string{caLine}, ok: true},
		{name: "valid, CA for the host without port", cert: hostCert(nil),
			lines: []string{"@cert-authority 198.18.1.1 " + authorizedKey(ca.PublicKey())}, ok: true},
		{name: "valid from its first second", cert: hostCert(func(c *ssh.Certificate) { c.ValidAfter = uint64(now.Unix()) }),
			lines: []string{caLine}, ok: true},
		{name: "expired at its last second", cert: hostCert(func(c *ssh.Certificate) { c.ValidBefore = uint64(now.Unix()) }),
			lines: []string{caLine}, msg: "Certificate invalid: expired"},
		{name: "expired, plain key known", cert: hostCert(func(c *ssh.Certificate) { c.ValidBefore = 1 }),
			lines: []string{caLine, plainLine}, msg: "Certificate invalid: expired", ok: true},
		{name: "not yet valid", cert: hostCert(func(c *ssh.Certificate) { c.ValidAfter = uint64(now.Unix()) + 1 }),
			lines: []string{caLine}, msg: "Certificate invalid: not yet valid"},
		{name: "user certificate", cert: hostCert(func(c *ssh.Certificate) { c.CertType = ssh.UserCert; c.ValidBefore = 1 }),
			lines: []string{caLine}, msg: "Certificate invalid: not a host certificate"},
		{name: "other principal", cert: hostCert(func(c *ssh.Certificate) { c.ValidPrincipals = []string{"198.18.1.10", "*"} }),
			lines: []string{caLine}, msg: "Certificate invalid: name is not a listed principal"},
		{name: "no principals", cert: hostCert(func(c *ssh.Certificate) { c.ValidPrincipals = nil }),
			lines: []string{caLine}, msg: "Certificate lacks principal list"},
		{name: "critical option", cert: hostCert(func(c *ssh.Certificate) { c.CriticalOptions = map[string]string{"force-command": "x"} }),
			lines: []string{caLine, plainLine}, msg: "Certificate contains unsupported critical options", ok: true},
		{name: "alias is the principal", cert: hostCert(func(c *ssh.Certificate) { c.ValidPrincipals = []string{"gw.example"} }),
			lines: []string{"@cert-authority gw.example " + authorizedKey(ca.PublicKey())}, alias: "gw.example", ok: true},
		{name: "alias, host is the principal", cert: hostCert(nil),
			lines: []string{"@cert-authority gw.example " + authorizedKey(ca.PublicKey())}, alias: "gw.example",
			msg: "Certificate invalid: name is not a listed principal"},
		{name: "CA not trusted", cert: hostCert(nil), lines: []string{"@cert-authority * " + authorizedKey(newSigner(t).PublicKey())}},
		{name: "CA trusted for other hosts", cert: hostCert(nil),
			lines: []string{"@cert-authority *.example " + authorizedKey(ca.PublicKey()), plainLine}, ok: true},
	} {
		cfg := hostKeyCfg(t, "yes", false)
		cfg.HostKeyAlias = tc.alias
		writeFile(t, cfg.UserKnownHostsFiles[0], strings.Join(tc.lines, "\n")+"\n")
		var stderr bytes.Buffer
		h := newHostKeyChecker(cfg, &Dialer{Stderr: &stderr})
		h.now = func() time.Time { return now }
		err := h.check("", remoteAddr, tc.cert)
		if (err == nil) != tc.ok || err != nil && !errors.Is(err, ErrHostKeyVerification) {
			t.Errorf("%s: err = %v\n%s", tc.name, err, stderr.String())
		}
		var lines []string
		for _, l := range strings.Split(stderr.String(), "\n") {
			if strings.HasPrefix(l, "Certificate ") {
				lines = append(lines, l)
			}
		}
		if tc.msg == "" && len(lines) != 0 || tc.msg != "" && !slices.Equal(lines, []string{tc.msg}) {
			t.Errorf("%s: Certificate lines %q, want %q", tc.name, lines, tc.msg)
		}
	}
}

// A certificate whose CA signature does not verify fails the handshake
// outright, as in ssh (which rejects it while parsing), with no retry of
// the plain key.
func TestHostCertificateBadSignature(t *testing.T) {
	host, ca := newSigner(t), newSigner(t)
	c := &ssh.Certificate{Key: host.PublicKey(), CertType: ssh.HostCert, ValidPrincipals: []string{"198.18.1.1"},
		ValidBefore: ssh.CertTimeInfinity}
	if err := c.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	if err := verifyCertSignature(c); err != nil {
		t.Fatalf("x/crypto's signature: %v", err)
	}
	c.ValidPrincipals = []string{"198.18.1.99"}
	cfg := hostKeyCfg(t, "yes", false)
	writeFile(t, cfg.UserKnownHostsFiles[0], "[198.18.1.1]:2222 "+authorizedKey(host.PublicKey())+"\n")
	var stderr bytes.Buffer
	err := newHostKeyChecker(cfg, &Dialer{Stderr: &stderr}).check("", remoteAddr, c)
	if err == nil || errors.Is(err, ErrHostKeyVerification) || !strings.Contains(err.Error(), "does not verify") {
		t.Errorf("err = %v", err)
	}
	eq(t, "stderr", stderr.String(), "")
}

// ssh refuses CA signatures made with SHA-1 RSA (CASignatureAlgorithms).
func TestHostCertificateSHA1Signature(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := ssh.NewSignerFromKey(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	c := signCert(t, &ssh.Certificate{Key: newSigner(t).PublicKey(), CertType: ssh.HostCert,
		ValidPrincipals: []string{"h"}, ValidBefore: ssh.CertTimeInfinity}, ca, ssh.KeyAlgoRSA)
	if err := verifyCertSignature(c); err != nil {
		t.Fatal(err)
	}
	eq(t, "reason", certHostProblem(c, "h", time.Now()), "Certificate signed with disallowed algorithm")
	c = signCert(t, c, ca, ssh.KeyAlgoRSASHA512)
	eq(t, "rsa-sha2-512", certHostProblem(c, "h", time.Now()), "")
}

// A re-key presenting the accepted key again passes silently, even after
// known_hosts changed; another key is judged afresh.
func TestHostKeyRekeyKeepsAcceptedKey(t *testing.T) {
	host, ca := newSigner(t), newSigner(t)
	cert := signCert(t, &ssh.Certificate{Key: host.PublicKey(), CertType: ssh.HostCert,
		ValidPrincipals: []string{"198.18.1.1"}, ValidBefore: 1}, ca, "")
	cfg := hostKeyCfg(t, "accept-new", false)
	writeFile(t, cfg.UserKnownHostsFiles[0], "@cert-authority * "+authorizedKey(ca.PublicKey())+"\n")
	var stderr bytes.Buffer
	h := newHostKeyChecker(cfg, &Dialer{Stderr: &stderr})
	if err := h.check("", remoteAddr, cert); err != nil {
		t.Fatal(err)
	}
	eq(t, "first", stderr.String(), "Certificate invalid: expired\n"+
		"Warning: Permanently added '[198.18.1.1]:2222' (ED25519) to the list of known hosts.\n")
	writeFile(t, cfg.UserKnownHostsFiles[0], "@revoked * "+authorizedKey(ca.PublicKey())+"\n")
	stderr.Reset()
	if err := h.check("", remoteAddr, cert); err != nil || stderr.Len() != 0 {
		t.Errorf("re-key: %v %q", err, stderr.String())
	}
	cfg.StrictHostKeyChecking = "yes"
	if err := h.check("", remoteAddr, newSigner(t).PublicKey()); err == nil {
		t.Error("re-key with another key passed")
	}
}

// changedLine is the last line of the changed-key warning: ssh's, except
// under StrictHostKeyChecking no, where ssh would connect with tunnels
// disabled and sshvpn refuses.
func changedLine(mode string) string {
	if mode == "no" {
		return "Host key for [198.18.1.1]:2222 has changed; sshvpn refuses it even with StrictHostKeyChecking no."
	}
	return "Host key for [198.18.1.1]:2222 has changed and you have requested strict checking."
}
