package sshclient

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// oracle is one OpenSSH client used as the reference: Debian's 9.2 and the
// 10.x unpacked beside it (.ci/openssh10).
type oracle struct {
	bin   string
	newer bool // 10.x: accepts the constructs tagged needs10
}

var sshBinaries = []string{"/usr/bin/ssh", "/opt/sshvpn-openssh10/usr/bin/ssh"}

var versionRE = regexp.MustCompile(`OpenSSH_(\d+)\.`)

// oracles returns the ssh clients present; a missing one fails under
// CI=true and is skipped elsewhere.
func oracles(t *testing.T) []oracle {
	t.Helper()
	var out []oracle
	for _, bin := range sshBinaries {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("CI=true but %s is missing: .ci/run must install it (and run .ci/openssh10)", bin)
			}
			t.Logf("leaving out %s: not installed", bin)
			continue
		}
		v, _ := exec.Command(bin, "-V").CombinedOutput()
		m := versionRE.FindSubmatch(v)
		if m == nil {
			t.Fatalf("%s -V printed %q", bin, v)
		}
		major, _ := strconv.Atoi(string(m[1]))
		out = append(out, oracle{bin: bin, newer: major >= 10})
	}
	if len(out) == 0 {
		t.Skip("no OpenSSH client found; install openssh-client to compare with ssh -G")
	}
	return out
}

// sshG runs ssh -G and returns its keyword → values (identityfile and
// other repeated keywords keep every line), or ok=false when ssh refused
// the configuration.
func sshG(t *testing.T, bin string, args ...string) (m map[string][]string, stderr string, ok bool) {
	t.Helper()
	// -N: sshvpn opens no session, so Match sessiontype sees "none" in
	// both.
	cmd := exec.Command(bin, append([]string{"-G", "-N"}, args...)...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		if _, isExit := err.(*exec.ExitError); !isExit {
			t.Fatalf("%s: %v", bin, err)
		}
		return nil, errb.String(), false
	}
	m = map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		m[k] = append(m[k], v)
	}
	return m, errb.String(), true
}

// TestResolveMatchesSSH compares Resolve with ssh -G on a few hand-written
// files; the generated corpus is in corpus_test.go. ssh -G uses the real
// home directory and user, so Resolve does too here.
func TestResolveMatchesSSH(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "inc.d", "a.conf"), "Host inc*\n  User incuser\n  Port 4022\n")
	cfg := writeFile(t, filepath.Join(dir, "config"), `
Include `+filepath.Join(dir, "inc.d", "*.conf")+`
Host alias
  HostName %h.Example.ORG
  IdentityFile ~/.ssh/alias_%h_%r
  IdentityFile /keys/%u/%d
Host *.example.org !skip.example.org
  ServerAliveInterval 1m5s
  StrictHostKeyChecking accept-new
Match originalhost alias user bob
  Port 2001
Match host alias.example.org
  User bob
  ProxyJump j1@hop1:2022,hop2
Match final host alias.example.org
  ServerAliveCountMax 7
Match exec false
  Port 9
Match exec "test %n = other"
  Compression yes
Match localuser nobody
  Port 10
Host other
  StrictHostKeyChecking no
  ProxyJump none
  User "quoted user"
Host *
  IdentityFile ~/.ssh/common
  Port=2200
  StrictHostKeyChecking=yes
`)
	cases := [][]string{
		{"alias"},
		{"bob@alias"},
		{"skip.example.org"},
		{"other"},
		{"incx"},
		{"-p", "33", "-o", "User=u2", "-o", "ServerAliveInterval=3", "-J", "j9", "alias"},
		{"-o", "StrictHostKeyChecking=off", "-o", "Port=5", "me@plain"},
	}
	e, err := currentEnv()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range oracles(t) {
		t.Run(filepath.Base(filepath.Dir(filepath.Dir(filepath.Dir(o.bin))))+"_"+strconv.FormatBool(o.newer), func(t *testing.T) {
			for _, args := range cases {
				got, err := resolve(optionsFromArgs(cfg, args), e)
				if err != nil {
					t.Fatalf("%q: %v", args, err)
				}
				want, stderr, ok := sshG(t, o.bin, append([]string{"-F", cfg}, args...)...)
				if !ok {
					t.Fatalf("%s -G %q failed: %s", o.bin, args, stderr)
				}
				for _, d := range compareWithSSH(got, want, e, o, false) {
					t.Errorf("%q: %s", args, d)
				}
			}
		})
	}
}

// optionsFromArgs turns the ssh flags the cases use into Options.
func optionsFromArgs(cfg string, args []string) Options {
	o := Options{ConfigFile: cfg}
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "-p":
			i++
			o.Port, _ = strconv.Atoi(args[i])
		case "-o":
			i++
			o.Opts = append(o.Opts, args[i])
		case "-J":
			i++
			o.Jump = args[i]
		default:
			o.Destination = args[i]
		}
	}
	return o
}

// compareWithSSH lists the differences between c and ssh -G's output g,
// for every keyword sshvpn resolves.
func compareWithSSH(c *Config, g map[string][]string, e env, o oracle, plainCiphers bool) []string {
	var diffs []string
	one := func(k string) string {
		if len(g[k]) == 0 {
			return ""
		}
		return g[k][0]
	}
	check := func(k, got, want string) {
		if got != want {
			diffs = append(diffs, k+" = "+strconv.Quote(got)+", ssh -G says "+strconv.Quote(want))
		}
	}
	yesno := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	seconds := func(k string) string {
		if v := one(k); v != "none" {
			return v
		}
		return "0"
	}
	check("hostname", c.HostName, one("hostname"))
	check("user", c.User, one("user"))
	check("port", strconv.Itoa(c.Port), one("port"))
	jump := one("proxyjump")
	if jump == "none" {
		jump = ""
	}
	check("proxyjump", c.ProxyJump, jump)
	check("serveraliveinterval", strconv.Itoa(int(c.ServerAliveInterval.Seconds())), seconds("serveraliveinterval"))
	check("serveralivecountmax", strconv.Itoa(c.ServerAliveCountMax), one("serveralivecountmax"))
	check("connecttimeout", strconv.Itoa(int(c.ConnectTimeout.Seconds())), seconds("connecttimeout"))
	files := func(l []string) string {
		if l == nil {
			return "none" // ssh -G prints the "none" it keeps
		}
		return strings.Join(l, " ")
	}
	check("userknownhostsfile", files(c.UserKnownHostsFiles), one("userknownhostsfile"))
	check("globalknownhostsfile", files(c.GlobalKnownHostsFiles), one("globalknownhostsfile"))
	strict := map[string]string{"yes": "true", "no": "false", "ask": "ask", "accept-new": "accept-new"}[c.StrictHostKeyChecking]
	check("stricthostkeychecking", strict, one("stricthostkeychecking"))
	check("hashknownhosts", yesno(c.HashKnownHosts), one("hashknownhosts"))
	check("hostkeyalias", c.HostKeyAlias, one("hostkeyalias"))
	tunnel := map[string]string{"no": "false", "point-to-point": "point-to-point", "ethernet": "ethernet"}[c.Tunnel]
	if one("tunnel") == "true" {
		tunnel = map[string]string{"point-to-point": "true"}[c.Tunnel]
	}
	check("tunnel", tunnel, one("tunnel"))
	check("tunneldevice", c.TunnelDevice, one("tunneldevice"))
	check("batchmode", yesno(c.BatchMode), one("batchmode"))
	check("identitiesonly", yesno(c.IdentitiesOnly), one("identitiesonly"))
	check("addressfamily", c.AddressFamily, one("addressfamily"))
	check("compression", yesno(c.Compression), one("compression"))
	check("loglevel", c.LogLevel, one("loglevel"))
	// Ciphers: sshvpn applies +, - and ^ to x/crypto/ssh's defaults, ssh
	// to its own, so only a plain list can be compared.
	if plainCiphers && c.Ciphers != nil {
		check("ciphers", strings.Join(c.Ciphers, ","), one("ciphers"))
	}
	// ssh -G prints identity files as written; ssh expands them when it
	// loads them, with the resolved values -G printed.
	r := newResolver(e, one("host"))
	r.vals["proxyjump"] = setting{args: []string{jump}}
	port, _ := strconv.Atoi(one("port"))
	gc := &Config{HostName: one("hostname"), User: one("user"), Port: port, HostKeyAlias: one("hostkeyalias")}
	tok := r.connTokens(gc)
	if !o.newer {
		// OpenSSH 9.2's %C does not hash the jump host.
		tok['C'] = connectionHash(e.localHost, gc.HostName, one("port"), gc.User, "")
	}
	var want []string
	for _, f := range g["identityfile"] {
		p, err := r.expandPath(tok, f)
		if err != nil {
			diffs = append(diffs, "expand ssh's identityfile "+f+": "+err.Error())
			continue
		}
		want = appendUnique(want, p)
	}
	if isDefaultIdentityList(g["identityfile"]) {
		want = existing(want)
	}
	check("identityfile", strings.Join(c.IdentityFiles, "\n"), strings.Join(want, "\n"))
	return diffs
}

// isDefaultIdentityList reports whether l is ssh's list of default
// identities (fill_default_options), which sshvpn filters to existing files.
func isDefaultIdentityList(l []string) bool {
	defaults := "id_rsa id_ecdsa id_ecdsa_sk id_ed25519 id_ed25519_sk id_xmss id_dsa"
	for _, f := range l {
		name, ok := strings.CutPrefix(f, "~/.ssh/")
		if !ok || !strings.Contains(" "+defaults+" ", " "+name+" ") {
			return false
		}
	}
	return len(l) >= 5
}

func existing(paths []string) []string {
	var out []string
	for _, p := range paths {
		if strings.HasSuffix(p, "id_xmss") || strings.HasSuffix(p, "id_dsa") {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// requireTool skips (fails under CI=true) when a program the test runs is
// missing.
func requireTool(t *testing.T, path string) {
	t.Helper()
	if _, err := exec.LookPath(path); err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true but %s is missing: .ci/run must install it", path)
	}
	t.Skipf("%s not installed", path)
}
