package sshclient

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// sshBinaries are the OpenSSH clients used as oracles: Debian's and the
// unpacked 10.x beside it.
var sshBinaries = []string{"/usr/bin/ssh", "/opt/sshvpn-openssh10/usr/bin/ssh"}

func requireTool(t *testing.T, path string) {
	t.Helper()
	if _, err := exec.LookPath(path); err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true but %s is missing: .ci/run must install it", path)
	}
	t.Skipf("%s not installed; install openssh-client (and the 10.x unpack) to compare with ssh -G", path)
}

// sshG runs ssh -G and returns its keyword → values (identityfile and
// other repeated keywords keep every line).
func sshG(t *testing.T, bin string, args ...string) map[string][]string {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-G"}, args...)...)
	cmd.Stdin = nil
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s -G %q: %v\n%s", bin, args, err, stderr.String())
	}
	m := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		m[k] = append(m[k], v)
	}
	return m
}

// TestResolveMatchesSSH compares Resolve with ssh -G on the same files.
// ssh -G uses the real home directory and user, so Resolve does too here.
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
	for _, bin := range sshBinaries {
		t.Run(strings.ReplaceAll(strings.Trim(bin, "/"), "/", "_"), func(t *testing.T) {
			requireTool(t, bin)
			for _, args := range cases {
				got, err := resolve(optionsFromArgs(t, cfg, args), e)
				if err != nil {
					t.Fatalf("%q: %v", args, err)
				}
				want := sshG(t, bin, append([]string{"-F", cfg}, args...)...)
				compareWithSSH(t, args, got, want, e)
			}
		})
	}
}

// optionsFromArgs turns the few ssh flags the cases use into Options.
func optionsFromArgs(t *testing.T, cfg string, args []string) Options {
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

func compareWithSSH(t *testing.T, args []string, c *Config, g map[string][]string, e env) {
	t.Helper()
	one := func(k string) string {
		if len(g[k]) == 0 {
			return ""
		}
		return g[k][0]
	}
	check := func(k, got string) {
		t.Helper()
		if want := one(k); got != want {
			t.Errorf("%q: %s = %q, ssh -G says %q", args, k, got, want)
		}
	}
	check("hostname", c.HostName)
	check("user", c.User)
	check("port", strconv.Itoa(c.Port))
	check("proxyjump", c.ProxyJump)
	check("serveraliveinterval", strconv.Itoa(int(c.ServerAliveInterval.Seconds())))
	check("serveralivecountmax", strconv.Itoa(c.ServerAliveCountMax))
	check("userknownhostsfile", strings.Join(c.UserKnownHostsFiles, " "))
	strict := map[string]string{"yes": "true", "no": "false", "ask": "ask", "accept-new": "accept-new"}[c.StrictHostKeyChecking]
	check("stricthostkeychecking", strict)
	// ssh -G prints identity files unexpanded; expand them as ssh does at
	// load time.
	r := newResolver(e, c.OriginalHost)
	r.vals["proxyjump"] = setting{args: []string{c.ProxyJump}}
	tok := r.tokens(c)
	var want []string
	for _, f := range g["identityfile"] {
		p, err := tok.expandPath(f)
		if err != nil {
			t.Fatalf("expand %q: %v", f, err)
		}
		want = append(want, p)
	}
	if isDefaultIdentityList(g["identityfile"]) {
		want = existing(want)
	}
	if strings.Join(c.IdentityFiles, "\n") != strings.Join(want, "\n") {
		t.Errorf("%q: identityfile = %q, ssh -G says %q", args, c.IdentityFiles, want)
	}
}

func isDefaultIdentityList(l []string) bool {
	for _, f := range l {
		if !strings.HasPrefix(f, "~/.ssh/id_") {
			return false
		}
	}
	return true
}

func existing(paths []string) []string {
	var out []string
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil && !strings.HasSuffix(p, "id_xmss") {
			out = append(out, p)
		}
	}
	return out
}
