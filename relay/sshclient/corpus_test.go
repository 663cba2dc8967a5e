package sshclient

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// corpusCase is one generated configuration: a main file, files it
// includes, and an ssh command line.
type corpusCase struct {
	files        map[string]string // name (relative to the case dir) → content
	args         []string          // ssh flags and the destination
	needs10      bool              // uses a construct only OpenSSH ≥ 9.4/10.0 accepts or resolves this way
	plainCiphers bool
}

// corpusSize is how many configurations TestCorpusMatchesSSH generates.
const corpusSize = 400

var (
	corpusHosts = []string{"alias", "gw", "Gw.Example.org", "web1.example.org", "skip.example.org", "other", "198.18.0.7"}
	corpusUsers = []string{"bob", "alice", "root", "deploy"}
)

// genCase makes a deterministic random configuration from seed. Every
// construct of ssh_config appears with some probability: Host patterns
// with negation and wildcards, every Match criterion, negation, comma
// lists, quoting, "all" where OpenSSH allows it, Include with globs,
// tokens and environment variables, keywords given twice, "=" and white
// space forms, comments, and some lines ssh refuses.
func genCase(seed int64, dir string) corpusCase {
	rnd := rand.New(rand.NewSource(seed))
	c := corpusCase{files: map[string]string{}}
	pick := func(l ...string) string { return l[rnd.Intn(len(l))] }
	chance := func(p float64) bool { return rnd.Float64() < p }
	sep := func() string { return pick(" ", "=", " = ", "\t", "  ") }
	kwCase := func(k string) string {
		switch rnd.Intn(3) {
		case 0:
			return strings.ToLower(k)
		case 1:
			return strings.ToUpper(k[:1]) + k[1:]
		}
		return k
	}
	var value func() (string, string)
	// bad values make ssh refuse the file; they are kept rare so most
	// cases compare resolved values.
	bad := map[string]bool{"0": true, "x1": true, "bogus": true, "x": true, "5x": true, "-1": true, "maybe": true,
		"nonsense-cipher": true, "ipx": true, "loud": true}
	anyValue := func() (string, string) {
		switch rnd.Intn(22) {
		case 0:
			return "HostName", pick("%h.example.org", "real.example", "198.18.0.9", "%h", "Upper.Example", "h%%x")
		case 1:
			v := pick(corpusUsers...)
			if chance(0.2) {
				c.needs10 = true // 9.2 does not expand User
				v = pick("u_%h", "u%%", "${SSHVPN_CORPUS_USER}")
			}
			return "User", v
		case 2:
			return "Port", pick("2222", "22", "ssh", "65535", "0", "x1")
		case 3:
			return "IdentityFile", pick("~/.ssh/id_corpus", "%d/.ssh/k_%h_%r", "/keys/%u/%p", `"/keys/with space"`, "~/.ssh/id_ed25519", "${HOME}/k")
		case 4:
			return "ProxyJump", pick("j1", "u@j2:2022", "j1,j2", "none", "ssh://u@j3:23", "[198.18.0.1]:22", "a,b,c")
		case 5:
			return "Tunnel", pick("yes", "no", "point-to-point", "ethernet", "true", "bogus")
		case 6:
			return "TunnelDevice", pick("any", "0:1", "5", "any:7", "x")
		case 7:
			return "ConnectTimeout", pick("10", "1m", "none", "1h30m", "0", "5x")
		case 8:
			return "ServerAliveInterval", pick("15", "1m5s", "none", "0")
		case 9:
			return "ServerAliveCountMax", pick("3", "7", "0", "-1")
		case 10:
			return "UserKnownHostsFile", pick("~/.ssh/kh1 ~/.ssh/kh2", "/dev/null", "none", "%d/kh_%h_%p", "/kh/%r@%n")
		case 11:
			return "GlobalKnownHostsFile", pick("/etc/kh", "none", "/a /b")
		case 12:
			return "StrictHostKeyChecking", pick("yes", "no", "ask", "accept-new", "off", "false", "maybe")
		case 13:
			return "HashKnownHosts", pick("yes", "no")
		case 14:
			return "HostKeyAlias", pick("Alias.Key", "k1")
		case 15:
			v := pick("aes128-ctr,aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com", "aes128-ctr,aes128-ctr", "nonsense-cipher")
			c.plainCiphers = true
			return "Ciphers", v
		case 16:
			return "BatchMode", pick("yes", "no", "true")
		case 17:
			return "AddressFamily", pick("any", "inet", "inet6", "ipx")
		case 18:
			return "Compression", pick("yes", "no", "true")
		case 19:
			return "LogLevel", pick("QUIET", "error", "INFO", "verbose", "DEBUG", "debug3", "loud")
		case 20:
			return "IdentitiesOnly", pick("yes", "no")
		}
		// Valid ssh_config that does not concern a tunnel.
		return pick("SendEnv", "GSSAPIAuthentication", "ControlMaster", "ForwardAgent", "ForwardX11Trusted", "CheckHostIP", "TCPKeepAlive"),
			pick("yes", "no")
	}
	value = func() (string, string) {
		for {
			k, v := anyValue()
			if k == "Compression" && v == "true" || bad[v] && !(k == "ConnectTimeout" || k == "ServerAliveInterval" || k == "ServerAliveCountMax") || bad[v] && v != "0" {
				if !chance(0.03) {
					continue
				}
			}
			return k, v
		}
	}
	line := func() string {
		k, v := value()
		if k == "SendEnv" {
			v = "LANG LC_*"
		} else if k == "ControlMaster" && chance(0.5) {
			v = "auto"
		}
		if chance(0.1) && !strings.ContainsAny(v, `" `) {
			v = `"` + v + `"`
		}
		l := "  " + kwCase(k) + sep() + v
		if chance(0.1) {
			l += " # trailing comment"
		}
		return l
	}
	body := func(n int) string {
		var b strings.Builder
		for i := 0; i < n; i++ {
			b.WriteString(line() + "\n")
			if chance(0.05) {
				b.WriteString("# a comment line\n\n")
			}
		}
		return b.String()
	}
	hostLine := func() string {
		var pats []string
		for n := 1 + rnd.Intn(3); n > 0; n-- {
			p := pick("alias", "gw", "*", "*.example.org", "!skip*", "gw?", "Gw.Example.org", "gw.example.org", "web*", "198.18.0.*", "other", "real.example")
			pats = append(pats, p)
		}
		return kwCase("Host") + sep() + strings.Join(pats, " ")
	}
	criterion := func() string {
		neg := ""
		if chance(0.2) {
			neg = "!"
		}
		switch rnd.Intn(12) {
		case 0:
			return neg + pick("canonical", "final")
		case 1, 2:
			list := pick("alias", "*.example.org", "gw,web*", "!skip*,*.example.org", "real.example", "gw.example.org,other", "GW*")
			if chance(0.2) {
				list = `"` + list + `"`
			}
			return neg + "host " + list
		case 3:
			return neg + "originalhost " + pick("alias", "gw*", "Gw.Example.org", "*,!other")
		case 4:
			return neg + "user " + pick("bob", "root", "al*", "!root,*")
		case 5:
			return neg + "localuser " + pick("root", "nobody", "r*")
		case 6:
			return neg + "exec " + pick("true", "false", `"test %h = alias"`, `"test %n = gw"`, `"test %r = bob"`, `"exit 3"`, `"test -n %p"`)
		case 7:
			c.needs10 = true
			return neg + "localnetwork " + pick("127.0.0.0/8", "198.19.0.0/16", "::1/128", "10.0.0.1/8", "garbage")
		case 8:
			c.needs10 = true
			return neg + "tagged " + pick("t1", `""`, "t*")
		case 9:
			c.needs10 = true
			return neg + "version " + pick("OpenSSH_10*", "OpenSSH_9*", "*")
		case 10:
			c.needs10 = true
			return neg + pick("host=alias", "user=bob", "exec='test %h = gw'", "sessiontype none", "command \"\"")
		}
		return neg + "host " + pick("gw", "alias")
	}
	matchLine := func() string {
		var crit []string
		switch rnd.Intn(8) {
		case 0:
			crit = []string{pick("all", "!all")}
		case 1:
			crit = []string{pick("final", "canonical"), "all"}
		case 2:
			if chance(0.1) {
				crit = []string{criterion(), "all", criterion()} // ssh refuses
			} else {
				crit = []string{criterion(), "all"} // allowed after one criterion
			}
		default:
			for n := 1 + rnd.Intn(3); n > 0; n-- {
				crit = append(crit, criterion())
			}
		}
		return kwCase("Match") + " " + strings.Join(crit, " ")
	}
	block := func() string {
		switch rnd.Intn(10) {
		case 0, 1, 2, 3:
			return hostLine() + "\n" + body(1+rnd.Intn(3))
		case 4, 5, 6:
			return matchLine() + "\n" + body(1+rnd.Intn(3))
		case 7:
			if chance(0.3) {
				c.needs10 = true
				return "  Tag " + pick("t1", "t2") + "\n"
			}
		case 8:
			if chance(0.3) {
				return "IgnoreUnknown Sshvpn*,Bogus*\n  BogusOption 1\n"
			}
			if chance(0.1) {
				return "  UnknownKeyword yes\n" // ssh refuses
			}
		}
		return body(1)
	}
	// Included files, reached by an absolute glob, a relative path (to
	// ~/.ssh for -F files; the case dir lives there) and, for 10.0, a
	// path with tokens.
	nInc := rnd.Intn(3)
	var mainBody strings.Builder
	if chance(0.3) {
		mainBody.WriteString("# generated by corpus_test.go\n\n")
	}
	for i := 0; i < nInc; i++ {
		name := fmt.Sprintf("inc.d/%02d-%s.conf", i, pick("a", "b"))
		var b strings.Builder
		for n := 1 + rnd.Intn(3); n > 0; n-- {
			b.WriteString(block())
		}
		c.files[name] = b.String()
	}
	if chance(0.1) {
		c.files["inc.d/.hidden.conf"] = "Port 9999\n" // glob(3) skips dot files
	}
	for n := 2 + rnd.Intn(4); n > 0; n-- {
		if nInc > 0 && chance(0.3) {
			switch rnd.Intn(4) {
			case 0:
				mainBody.WriteString("Include " + filepath.Join(dir, "inc.d", "*.conf") + "\n")
			case 1:
				mainBody.WriteString(hostLine() + "\n  Include " + filepath.Join(dir, "inc.d", "0*") + "\n")
			case 2:
				rel, _ := filepath.Rel(filepath.Join(os.Getenv("HOME"), ".ssh"), filepath.Join(dir, "inc.d"))
				mainBody.WriteString("Include " + rel + "/*.conf\n")
			case 3:
				c.needs10 = true
				mainBody.WriteString("Include ${SSHVPN_CORPUS_DIR}/inc.d/*.conf\n")
			}
		}
		mainBody.WriteString(block())
	}
	c.files["config"] = mainBody.String()

	if chance(0.2) {
		c.args = append(c.args, "-p", pick("2022", "33"))
	}
	// -J first: Options cannot say that an -o ProxyJump came before it
	// (ssh then refuses a second jump); -J beats -o ProxyJump.
	if chance(0.1) {
		c.args = append(c.args, "-J", pick("jx", "u@jy:2200"))
	}
	for n := rnd.Intn(3); n > 0; n-- {
		k, v := value()
		c.args = append(c.args, "-o", k+pick("=", " ")+strings.ReplaceAll(v, `"`, ""))
	}
	dest := pick(corpusHosts...)
	if chance(0.3) {
		dest = pick(corpusUsers...) + "@" + dest
	}
	c.args = append(c.args, dest)
	return c
}

// TestCorpusMatchesSSH is the differential test of ssh_config: a few hundred
// generated configurations, each resolved by sshvpn and by ssh -G of both
// OpenSSH generations; every keyword sshvpn resolves must agree, and a
// configuration ssh refuses must be refused. A case using a construct only
// the newer generation has (needs10) is compared with 10.x only.
func TestCorpusMatchesSSH(t *testing.T) {
	oracles := oracles(t)
	e, err := currentEnv()
	if err != nil {
		t.Fatal(err)
	}
	// Relative Includes in a -F file are relative to ~/.ssh, so the cases
	// live under it (removed at the end).
	base, err := os.MkdirTemp(filepath.Join(e.home, ".ssh"), "sshvpn-corpus-")
	if err != nil {
		if err := os.MkdirAll(filepath.Join(e.home, ".ssh"), 0o700); err != nil {
			t.Skipf("no ~/.ssh to hold the corpus: %v", err)
		}
		if base, err = os.MkdirTemp(filepath.Join(e.home, ".ssh"), "sshvpn-corpus-"); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	t.Setenv("SSHVPN_CORPUS_USER", "envuser")
	var compared, refused, mismatches, skipped int
	for i := 0; i < corpusSize; i++ {
		dir := filepath.Join(base, fmt.Sprint(i))
		t.Setenv("SSHVPN_CORPUS_DIR", dir)
		c := genCase(int64(i), dir)
		for name, content := range c.files {
			writeFile(t, filepath.Join(dir, name), content)
		}
		cfg := filepath.Join(dir, "config")
		args := append([]string{"-F", cfg}, c.args...)
		got, gerr := resolve(optionsFromArgs(cfg, c.args), e)
		for _, o := range oracles {
			if c.needs10 && !o.newer {
				skipped++
				continue
			}
			want, stderr, ok := sshG(t, o.bin, args...)
			var diffs []string
			switch {
			case !ok && gerr == nil && warnsUnknown(got) && (stderr == "" || strings.Contains(stderr, "Bad configuration option")):
				// By design: sshvpn warns of an unknown keyword where
				// ssh stops (only unknown keywords warn, so that a new
				// OpenSSH keyword does not stop sshvpn);
				// under LogLevel QUIET ssh says nothing of why.
				refused++
			case !ok && gerr == nil:
				diffs = []string{"ssh refused it (" + strings.TrimSpace(stderr) + ") but sshvpn accepted it"}
			case ok && gerr != nil:
				diffs = []string{"ssh accepted it but sshvpn refused it: " + gerr.Error()}
			case !ok:
				refused++
			default:
				diffs = compareWithSSH(got, want, e, o, c.plainCiphers)
			}
			compared++
			if len(diffs) > 0 {
				mismatches++
				t.Errorf("case %d vs %s: ssh -G %q:\n  %s\nconfig:\n%s", i, o.bin, c.args, strings.Join(diffs, "\n  "), dumpFiles(c))
			}
		}
	}
	t.Logf("corpus: %d configurations, %d comparisons with ssh -G (%d refused by both), %d skipped for 9.2, %d mismatches",
		corpusSize, compared, refused, skipped, mismatches)
}

func dumpFiles(c corpusCase) string {
	var b strings.Builder
	for name, content := range c.files {
		fmt.Fprintf(&b, "--- %s\n%s", name, content)
	}
	return b.String()
}

// warnsUnknown reports whether the resolved config warns of an unknown
// keyword.
func warnsUnknown(c *Config) bool {
	for _, w := range c.Warnings {
		if strings.Contains(w, "unknown keyword") {
			return true
		}
	}
	return false
}
