package sshclient

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	for _, mode := range []string{"yes", "ask"} { // ask without a terminal behaves like yes
		var stderr bytes.Buffer
		cfg := hostKeyCfg(t, mode, false)
		h := newHostKeyChecker(cfg, &Dialer{Stderr: &stderr})
		err := h.check("", remoteAddr, newSigner(t).PublicKey())
		if !errors.Is(err, ErrHostKeyVerification) {
			t.Fatalf("%s: err = %v", mode, err)
		}
		want := "No ED25519 host key is known for [198.18.1.1]:2222 and you have requested strict checking.\n" +
			"Host key verification failed.\n"
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
	}{{[]string{"maybe", "yes"}, true}, {[]string{fp}, true}, {[]string{"no"}, false}} {
		var stderr bytes.Buffer
		cfg := hostKeyCfg(t, "ask", false)
		p := &fakePrompter{answers: tc.answers}
		err := newHostKeyChecker(cfg, &Dialer{Stderr: &stderr, Prompt: p}).check("", remoteAddr, key)
		if (err == nil) != tc.ok {
			t.Errorf("%q: err = %v", tc.answers, err)
		}
		want := "The authenticity of host '[198.18.1.1]:2222 (198.18.1.1)' can't be established.\n" +
			"ED25519 key fingerprint is: " + fp + "\n" +
			"Are you sure you want to continue connecting (yes/no/[fingerprint])? "
		eq(t, "prompt", p.prompts[0], want)
		_, statErr := os.Stat(cfg.UserKnownHostsFiles[0])
		eq(t, "written", statErr == nil, tc.ok)
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
Host key for [198.18.1.1]:2222 has changed and you have requested strict checking.
Host key verification failed.
`, ssh.FingerprintSHA256(key), file, file)
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

func TestHostKeyAlgorithmsPreferKnownType(t *testing.T) {
	cfg := hostKeyCfg(t, "yes", false)
	writeFile(t, cfg.UserKnownHostsFiles[0], knownhosts.Line([]string{"198.18.1.1:2222"}, newSigner(t).PublicKey())+"\n")
	algs := newHostKeyChecker(cfg, &Dialer{}).algorithms()
	if len(algs) == 0 || algs[0] != ssh.KeyAlgoED25519 {
		t.Errorf("algorithms = %q, want ssh-ed25519 first", algs)
	}
	cfg.HostName = "unknown.example"
	if algs := newHostKeyChecker(cfg, &Dialer{}).algorithms(); algs != nil {
		t.Errorf("unknown host: algorithms = %q, want nil (defaults)", algs)
	}
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
