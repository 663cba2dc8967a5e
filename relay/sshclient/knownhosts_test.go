package sshclient

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// authorizedKey is "type base64", no comment.
func authorizedKey(k ssh.PublicKey) string {
	return strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(k)), "\n")
}

func TestParseKnownHostsLine(t *testing.T) {
	key := newSigner(t).PublicKey()
	ak := authorizedKey(key)
	for _, tc := range []struct {
		line   string
		marker hostMarker
		hosts  string
		err    string // "" parses; "-" is a blank or comment line
	}{
		{line: "host " + ak, hosts: "host"},
		{line: "  \thost,[h]:22\t" + ak + " a comment", hosts: "host,[h]:22"},
		{line: "@cert-authority *.example " + ak, marker: markerCA, hosts: "*.example"},
		{line: "@revoked  * " + ak, marker: markerRevoked, hosts: "*"},
		{line: "|1|salt|hash " + ak, hosts: "|1|salt|hash"},
		{line: "host " + ak + "\x00 anything after a NUL is ignored", hosts: "host"},
		{line: "", err: "-"},
		{line: " \t", err: "-"},
		{line: "  # comment " + ak, err: "-"},
		{line: "@revoked @revoked * " + ak, err: "more than one marker"},
		{line: "@cert-authoritY * " + ak, err: "unknown marker"},
		{line: "@cert-authority\t* " + ak, err: "unknown marker"}, // the marker runs to the first space
		{line: "@revoked", err: "invalid marker"},
		{line: "host", err: "truncated"},
		{line: "host   # comment", err: "truncated"},
		{line: "host ssh-ed25519", err: "no key"},
		{line: "host ssh-ed25519 \t", err: "no key"},
		{line: "host ssh-rsa " + strings.Fields(ak)[1], err: "names a ssh-ed25519 key"},
		{line: "host ssh-ed25519 !!!!", err: "illegal base64"},
		{line: "host ssh-ed25519 AAAA", err: "ssh-ed25519"},
	} {
		l, err := parseKnownHostsLine(tc.line)
		switch {
		case tc.err == "-":
			if !errors.Is(err, errNoKeyLine) {
				t.Errorf("%q: err = %v, want a blank line", tc.line, err)
			}
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err = %v, want %q", tc.line, err, tc.err)
			}
		case err != nil:
			t.Errorf("%q: %v", tc.line, err)
		case l.marker != tc.marker || l.hosts != tc.hosts || !bytes.Equal(l.key.Marshal(), key.Marshal()):
			t.Errorf("%q: got %+v", tc.line, l)
		}
	}
}

// matchPatternRef is match.c match_pattern transcribed literally, the
// reference for globMatch.
func matchPatternRef(s, p string) bool {
	for {
		if p == "" {
			return s == ""
		}
		if p[0] == '*' {
			for p != "" && p[0] == '*' {
				p = p[1:]
			}
			if p == "" {
				return true
			}
			for ; s != ""; s = s[1:] {
				if matchPatternRef(s, p) {
					return true
				}
			}
			return false
		}
		if s == "" || p[0] != '?' && p[0] != s[0] {
			return false
		}
		s, p = s[1:], p[1:]
	}
}

// TestGlobMatchIsMatchPattern compares every pattern over {a, b, *, ?} of
// up to 5 bytes with every string over {a, b} of up to 6.
func TestGlobMatchIsMatchPattern(t *testing.T) {
	all := func(alphabet string, n int) []string {
		out := []string{""}
		for prev := []string{""}; n > 0; n-- {
			var next []string
			for _, s := range prev {
				for _, c := range alphabet {
					next = append(next, s+string(c))
				}
			}
			out, prev = append(out, next...), next
		}
		return out
	}
	strs := all("ab", 6)
	for _, p := range all("ab*?", 5) {
		for _, s := range strs {
			if got, want := matchPattern(s, p), matchPatternRef(s, p); got != want {
				t.Fatalf("matchPattern(%q, %q) = %v, want %v", s, p, got, want)
			}
		}
	}
}

func TestMatchHostname(t *testing.T) {
	for _, tc := range []struct {
		host, patterns string
		want           int
	}{
		{"198.18.1.2", "*", 1},
		{"[198.18.1.2]:2022", "*", 1}, // ssh's * matches any port
		{"[198.18.1.2]:2022", "198.18.*", 0},
		{"[198.18.1.2]:2022", "[198.18.*]:*", 1},
		{"[198.18.1.2]:2022", "[198.18.1.2]:20?2", 1},
		{"198.18.1.2", "!198.18.1.2,*", -1},
		{"198.18.1.3", "!198.18.1.2,*", 1},
		{"[198.18.1.2]:2022", "!198.18.1.2,*", 1},
		{"Host.Example", "*.EXAMPLE", 1},
		{"host.example", "other,host.example", 1},
		{"host.example", "other,,x", 0},
		{"", "", 0},
		{"", ",", 1}, // an empty sub-pattern matches the empty string, as in ssh
		{"host", "!", 0},
		{"h", strings.Repeat("?", 1023), 0}, // too long for ssh's buffer: nothing matches
		{"h", strings.Repeat("*", 1022) + ",h", 1},
		{"h", strings.Repeat("*", 1023) + ",h", 0},
	} {
		if got := matchHostname(tc.host, tc.patterns); got != tc.want {
			t.Errorf("matchHostname(%q, %q) = %d, want %d", tc.host, tc.patterns, got, tc.want)
		}
	}
}

// Hashed names written by x/crypto's knownhosts (an independent writer)
// match; malformed ones are errors, which make ssh skip the line.
func TestMatchHostsFieldHashed(t *testing.T) {
	for _, host := range []string{"198.18.1.2", "[198.18.1.2]:2022"} {
		h := knownhosts.HashHostname(host)
		if ok, err := matchHostsField(host, h); !ok || err != nil {
			t.Errorf("%s: %v %v", host, ok, err)
		}
		if ok, err := matchHostsField(host+"x", h); ok || err != nil {
			t.Errorf("%s: other host matched: %v %v", host, ok, err)
		}
		mine := hashHost(host)
		if ok, _ := matchHostsField(host, mine); !ok || mine == hashHost(host) {
			t.Errorf("hashHost(%s) = %q: no match, or the salt is not fresh", host, mine)
		}
	}
	for _, bad := range []string{"|2|abc|def", "|1|", "|1|nosep", "|1||x", "|1|AAAA|x", "|1|!!!!|x"} {
		if _, err := matchHostsField("h", bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestLoadHostKeysAndCheck(t *testing.T) {
	host, other, ca := newSigner(t).PublicKey(), newSigner(t).PublicKey(), newSigner(t)
	cert := &ssh.Certificate{Key: host, CertType: ssh.HostCert, ValidPrincipals: []string{"h"}, ValidBefore: ssh.CertTimeInfinity}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f1 := writeFile(t, filepath.Join(dir, "a"), fmt.Sprintf("# c\nh %s\nbroken line\n[h]:2022 %s\n@cert-authority !h,* %s\n",
		authorizedKey(other), authorizedKey(host), authorizedKey(ca.PublicKey())))
	f2 := writeFile(t, filepath.Join(dir, "b"), "@cert-authority h "+authorizedKey(ca.PublicKey())) // no final newline
	log := slog.New(slog.DiscardHandler)
	files := []string{f1, filepath.Join(dir, "missing"), f2}

	hk := loadHostKeys("h", files, log)
	if len(hk) != 2 || hk[0].file != f1 || hk[0].line != 2 || hk[1].file != f2 || hk[1].line != 1 {
		t.Fatalf("entries for h: %+v", hk)
	}
	if st, e := hk.check(host); st != hostChanged || e.line != 2 {
		t.Errorf("plain key: %v %+v", st, e)
	}
	if st, e := hk.check(cert); st != hostOK || e.file != f2 {
		t.Errorf("certificate: %v %+v", st, e)
	}
	hk = loadHostKeys("[h]:2022", files, log)
	if st, _ := hk.check(host); st != hostOK || !hk.hasCA() || !hk.hasPlainType(ssh.KeyAlgoED25519) || hk.hasPlainType(ssh.KeyAlgoRSA) {
		t.Errorf("[h]:2022: %v %+v", st, hk)
	}
	if st, _ := loadHostKeys("x", files, log).check(host); st != hostNew {
		t.Errorf("x: %v", st)
	}

	// @revoked wins over everything, for the key and for the CA.
	for i, k := range []ssh.PublicKey{host, ca.PublicKey()} {
		f3 := writeFile(t, filepath.Join(dir, "c"), "@revoked * "+authorizedKey(k)+"\n")
		hk := loadHostKeys("[h]:2022", append(files, f3), log)
		if st, e := hk.check(cert); st != hostRevoked || e != nil {
			t.Errorf("revoked %s: %v", keyTypeName(k), st)
		}
		if i == 0 && (hk.hasPlainType(ssh.KeyAlgoED25519) || func() bool { st, _ := hk.check(host); return st != hostRevoked }()) {
			t.Error("a revoked plain key still counts")
		}
	}
}

func TestOtherNames(t *testing.T) {
	key := newSigner(t).PublicKey()
	home := t.TempDir()
	file := writeFile(t, filepath.Join(home, ".ssh", "known_hosts"), "h "+authorizedKey(key)+"\n"+
		"a,b "+authorizedKey(key)+"\n"+knownhosts.HashHostname("c")+" "+authorizedKey(key)+"\n"+
		"@revoked d "+authorizedKey(key)+"\n"+"e "+authorizedKey(newSigner(t).PublicKey())+"\n")
	got := otherNames("h", key, []string{file}, home, slog.New(slog.DiscardHandler))
	eq(t, "other names", got, []string{"~/.ssh/known_hosts:2: a,b", "~/.ssh/known_hosts:3: [hashed name]"})
}

func TestKnownHostsEntry(t *testing.T) {
	key := newSigner(t).PublicKey()
	eq(t, "entry", knownHostsEntry("[Host.Example]:2022", key, false), "[host.example]:2022 "+authorizedKey(key)+"\n")
	hashed := knownHostsEntry("[Host.Example]:2022", key, true)
	l, err := parseKnownHostsLine(strings.TrimSuffix(hashed, "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := matchHostsField("[host.example]:2022", l.hosts); !ok {
		t.Errorf("hashed entry %q does not match the lower-cased name", hashed)
	}
}

// FuzzKnownHostsLine: the parser never panics, and a line it accepts,
// written back in canonical form, parses to the same entry.
func FuzzKnownHostsLine(f *testing.F) {
	for _, s := range []string{
		"host ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG3oZzA1sDflplHNlmrzP9X8w8fYzjgr28iQ5rU7twxc",
		"@cert-authority *.example,!bad.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG3oZzA1sDflplHNlmrzP9X8w8fYzjgr28iQ5rU7twxc c",
		"@revoked\t[h]:2022 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG3oZzA1sDflplHNlmrzP9X8w8fYzjgr28iQ5rU7twxc",
		"|1|JfKTdBh7rNbXkVAQCRp4OQoPfmI=|USECr3SWf1JUPsms5AqfD5QfxkM= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG3oZzA1sDflplHNlmrzP9X8w8fYzjgr28iQ5rU7twxc",
		"# comment", "", "@revoked", "host ssh-rsa AAAA", "h\x00 x",
	} {
		f.Add(s, "h")
	}
	f.Fuzz(func(t *testing.T, line, host string) {
		l, err := parseKnownHostsLine(line)
		if err != nil {
			return
		}
		if l.key == nil || l.hosts == "" || strings.ContainsAny(l.hosts, " \t\x00") {
			t.Fatalf("%q: parsed to %+v", line, l)
		}
		canon := map[hostMarker]string{markerNone: "", markerCA: "@cert-authority ", markerRevoked: "@revoked "}[l.marker] +
			l.hosts + " " + authorizedKey(l.key)
		again, err := parseKnownHostsLine(canon)
		if err != nil || again.marker != l.marker || again.hosts != l.hosts || !bytes.Equal(again.key.Marshal(), l.key.Marshal()) {
			t.Fatalf("%q: canonical %q parsed to %+v, %v", line, canon, again, err)
		}
		matchHostsField(host, l.hosts) // must not panic
	})
}
