//go:build integration

package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/internal/nstest"
	"github.com/sshvpn/sshvpn/relay/gateway/gatewaytest"
)

// repoRoot is the checkout the tests install from.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// makeInstall runs make install from this checkout with the given
// variables, building into the test's own directory.
func makeInstall(t *testing.T, vars ...string) {
	t.Helper()
	nstest.RequireTool(t, "make")
	args := append([]string{"-C", repoRoot(t), "install", "BIN=" + filepath.Join(t.TempDir(), "sshvpn")}, vars...)
	if out, err := exec.Command("make", args...).CombinedOutput(); err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// units are the systemd units make install installs.
var units = []string{"sshvpn.service", "sshvpn-kernel.service", "sshvpn@.service"}

// TestSystemdUnits installs into a prefix of its own, so that each unit's
// ExecStart names a binary that exists, and checks the units as systemd
// would load them, the rootless unit's exposure, and that the gateway runs
// from the rootless unit's ExecStart line with its directories, telling
// systemd it is ready only once its port accepts.
func TestSystemdUnits(t *testing.T) {
	analyze := nstest.RequireTool(t, "systemd-analyze")
	prefix := t.TempDir()
	makeInstall(t, "PREFIX="+prefix)
	unitDir := filepath.Join(prefix, "lib", "systemd", "system")
	t.Run("verify", func(t *testing.T) {
		for _, u := range units {
			cmd := exec.Command(analyze, "verify", filepath.Join(unitDir, u))
			// Documentation= names man pages: the installed ones.
			cmd.Env = append(os.Environ(), "MANPATH="+filepath.Join(prefix, "share", "man"))
			out, err := cmd.CombinedOutput()
			if err != nil || len(out) > 0 {
				t.Errorf("systemd-analyze verify %s: %v\n%s", u, err, out)
			}
		}
	})
	t.Run("exposure", func(t *testing.T) {
		out, _ := exec.Command(analyze, "security", "--offline=true", filepath.Join(unitDir, "sshvpn.service")).CombinedOutput()
		m := regexp.MustCompile(`Overall exposure level for sshvpn.service: ([0-9.]+)`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("no exposure level in systemd-analyze security's output:\n%s", out)
		}
		if e, _ := strconv.ParseFloat(string(m[1]), 64); e > 2.0 {
			t.Errorf("sshvpn.service exposure %.1f, want at most 2.0:\n%s", e, out)
		}
	})
	t.Run("notify", func(t *testing.T) { testNotify(t, filepath.Join(unitDir, "sshvpn.service")) })
}

// execStart is a unit's ExecStart command line, with the variables
// systemd would expand expanded from env, split into words.
func execStart(t *testing.T, unit string, env map[string]string) []string {
	t.Helper()
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		cmdline, ok := strings.CutPrefix(line, "ExecStart=")
		if !ok {
			continue
		}
		var words []string
		for _, w := range strings.Fields(cmdline) {
			if v, ok := strings.CutPrefix(w, "$"); ok && !strings.HasPrefix(v, "{") {
				words = append(words, strings.Fields(env[v])...) // $VAR splits, as systemd's does
				continue
			}
			words = append(words, os.Expand(w, func(k string) string { return env[k] }))
		}
		return words
	}
	t.Fatalf("%s has no ExecStart", unit)
	return nil
}

// notifySocket is the service manager's end of NOTIFY_SOCKET: it hands
// every message it gets to msgs.
func notifySocket(t *testing.T) (path string, msgs <-chan string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch := make(chan string, 100)
	go func() {
		defer close(ch)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			ch <- string(buf[:n])
		}
	}()
	return path, ch
}

// awaitMsg waits for a message that contains want, and returns it and
// what came before it.
func awaitMsg(t *testing.T, msgs <-chan string, want string, within time.Duration) (string, []string) {
	t.Helper()
	var before []string
	deadline := time.After(within)
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatalf("the notify socket closed before %q", want)
			}
			if strings.Contains(m, want) {
				return m, before
			}
			before = append(before, m)
		case <-deadline:
			t.Fatalf("no %q within %v; got %q", want, within, before)
		}
	}
}

func testNotify(t *testing.T, unit string) {
	ns := nstest.New(t)
	state, conf, runtime := t.TempDir(), t.TempDir(), t.TempDir()
	client := gatewaytest.NewSigner(t)
	if err := os.WriteFile(filepath.Join(conf, "authorized_keys"), ssh.MarshalAuthorizedKey(client.PublicKey()), 0o644); err != nil {
		t.Fatal(err)
	}
	const listen = "127.0.0.1:2222"
	argv := execStart(t, unit, map[string]string{
		"STATE_DIRECTORY": state, "CONFIGURATION_DIRECTORY": conf, "RUNTIME_DIRECTORY": runtime, "SERVE_ARGS": "--listen " + listen,
	})
	argv[0] = sshvpnBin
	socket, msgs := notifySocket(t)
	const watchdog = 400 * time.Millisecond // WatchdogSec=; keepalives every 200ms
	gw := ns.Start(t, append([]string{"env", "NOTIFY_SOCKET=" + socket, "WATCHDOG_USEC=" + strconv.FormatInt(watchdog.Microseconds(), 10)}, argv...)...)

	m, before := awaitMsg(t, msgs, "READY=1", 10*time.Second)
	// At once, before anything else can happen: the port must accept.
	conn, err := ns.Dial(t, "tcp", listen)
	if err != nil {
		t.Fatalf("READY=1 came before the port accepted: %v", err)
	}
	banner, _ := bufio.NewReader(conn).ReadString('\n')
	conn.Close()
	if !strings.HasPrefix(banner, "SSH-2.0-sshvpn") {
		t.Fatalf("after READY=1 the port answered %q", banner)
	}
	if len(before) > 0 || !strings.Contains(m, "STATUS=0 connections, 0 tunnels") {
		t.Errorf("first messages %q then %q; want READY=1 with the status first", before, m)
	}
	if fi, err := os.Stat(filepath.Join(state, "ssh_host_ed25519_key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("host key in the unit's StateDirectory: %v, %v", fi, err)
	}
	// Its status socket is in the unit's RuntimeDirectory, where
	// sshvpn status looks.
	if out, err := exec.Command(sshvpnBin, "status", "--state-dir", runtime).CombinedOutput(); err != nil || !strings.Contains(string(out), "listen: "+listen) {
		t.Errorf("sshvpn status in the unit's RuntimeDirectory: %v\n%s", err, out)
	}

	// WATCHDOG=1 at half of WATCHDOG_USEC: count them over 3 timeouts.
	start := time.Now()
	pings := 0
	for time.Since(start) < 3*watchdog {
		if m, _ := awaitMsg(t, msgs, "", watchdog); m == "WATCHDOG=1\n" {
			pings++
		}
	}
	if pings < 3 || pings > 9 { // loose: the machine may be busy
		t.Errorf("%d keepalives in %v; want about 6 (one per %v)", pings, 3*watchdog, watchdog/2)
	}

	// A client comes: the status says so.
	c, err := ns.Dial(t, "tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	sc, chans, reqs, err := ssh.NewClientConn(c, listen, &ssh.ClientConfig{
		User: "test", Auth: []ssh.AuthMethod{ssh.PublicKeys(client)}, HostKeyCallback: ssh.InsecureIgnoreHostKey(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ssh.NewClient(sc, chans, reqs).Close()
	awaitMsg(t, msgs, "STATUS=1 connection, 0 tunnels", 5*time.Second)

	// systemctl reload: RELOADING=1 with the clock, then READY=1.
	gw.Signal(syscall.SIGHUP)
	m, _ = awaitMsg(t, msgs, "RELOADING=1", 5*time.Second)
	if !regexp.MustCompile(`MONOTONIC_USEC=[1-9][0-9]*\n`).MatchString(m) {
		t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", m)
	}
	awaitMsg(t, msgs, "READY=1", 5*time.Second)

	// systemctl stop: STOPPING=1, then a clean exit.
	gw.Signal(syscall.SIGTERM)
	awaitMsg(t, msgs, "STOPPING=1", 5*time.Second)
	if err := gw.Wait(10 * time.Second); err != nil {
		t.Fatalf("sshvpn serve after SIGTERM: %v", err)
	}
}

// TestInstall installs as a package would (DESTDIR, PREFIX=/usr) and
// checks what came: man pages that render cleanly and name every flag,
// completions that load and complete, and a binary that names its commit.
func TestInstall(t *testing.T) {
	dest := t.TempDir()
	makeInstall(t, "DESTDIR="+dest, "PREFIX=/usr")
	usr := filepath.Join(dest, "usr")
	t.Run("man", func(t *testing.T) { testManPages(t, filepath.Join(usr, "share", "man", "man1")) })
	t.Run("bash", func(t *testing.T) {
		testBashCompletion(t, filepath.Join(usr, "share", "bash-completion", "completions", "sshvpn"))
	})
	t.Run("zsh", func(t *testing.T) { testZshCompletion(t, filepath.Join(usr, "share", "zsh", "site-functions")) })
	t.Run("version", func(t *testing.T) {
		head, err := exec.Command("git", "-C", repoRoot(t), "rev-parse", "HEAD").Output()
		if err != nil {
			t.Skipf("not a git checkout: %v", err)
		}
		out, err := exec.Command(filepath.Join(usr, "bin", "sshvpn"), "version").Output()
		if err != nil || !strings.Contains(string(out), "revision "+strings.TrimSpace(string(head))) {
			t.Errorf("sshvpn version = %q, %v; want the revision %s", out, err, head)
		}
	})
	t.Run("units", func(t *testing.T) {
		for _, u := range units {
			b, err := os.ReadFile(filepath.Join(usr, "lib", "systemd", "system", u))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), "ExecStart=/usr/bin/sshvpn ") {
				t.Errorf("%s does not start the installed /usr/bin/sshvpn", u)
			}
		}
	})
}

func testManPages(t *testing.T, dir string) {
	nstest.RequireTool(t, "man")
	pages := map[string][]string{} // the words each page must have
	for _, c := range commands() {
		pages["sshvpn.1"] = append(pages["sshvpn.1"], c.name)
	}
	for _, name := range pagedCommands() {
		c, _ := lookupCommand(name)
		for _, f := range c.flagList() {
			pages["sshvpn-"+name+".1"] = append(pages["sshvpn-"+name+".1"], dashed(f.Name))
		}
	}
	for page, words := range pages {
		cmd := exec.Command("man", "--warnings", "-l", filepath.Join(dir, page))
		cmd.Env = append(os.Environ(), "MANWIDTH=80", "LC_ALL=C.UTF-8", "MAN_KEEP_FORMATTING=")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || stderr.Len() > 0 {
			t.Errorf("man --warnings -l %s: %v\n%s", page, err, stderr.String())
		}
		// The terminal's minus and hyphen glyphs, as the reader types them.
		text := strings.NewReplacer("\u2212", "-", "\u2010", "-").Replace(stripOverstrike(string(out)))
		if _, opts, ok := strings.Cut(text, "\nOPTIONS\n"); ok {
			text = opts // a flag must have its entry, not a mention in the description
		}
		for _, w := range words {
			if !regexp.MustCompile(`(^|[\s,(])` + regexp.QuoteMeta(w) + `([\s,.)=]|$)`).MatchString(text) {
				t.Errorf("%s does not name %s", page, w)
			}
		}
	}
}

// stripOverstrike removes the backspace bold and underline a pager-less
// man may still write.
func stripOverstrike(s string) string {
	return regexp.MustCompile(".\b").ReplaceAllString(s, "")
}

func testBashCompletion(t *testing.T, script string) {
	bash := nstest.RequireTool(t, "bash")
	complete := func(words ...string) []string {
		t.Helper()
		arr := make([]string, len(words))
		for i, w := range words {
			arr[i] = strconv.Quote(w)
		}
		prog := fmt.Sprintf(`source %q && complete -p sshvpn >/dev/null && COMP_WORDS=(%s) && COMP_CWORD=%d && _sshvpn && printf '%%s\n' "${COMPREPLY[@]}"`,
			script, strings.Join(arr, " "), len(words)-1)
		out, err := exec.Command(bash, "--norc", "--noprofile", "-c", prog).CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		got := strings.Fields(string(out))
		slices.Sort(got)
		return got
	}
	var want []string
	serve, _ := lookupCommand("serve")
	for _, f := range serve.flagList() {
		if strings.HasPrefix(f.Name, "max-") {
			want = append(want, "--"+f.Name)
		}
	}
	if got := complete("sshvpn", "serve", "--ma"); !slices.Equal(got, want) {
		t.Errorf("sshvpn serve --ma<TAB> = %q, want %q", got, want)
	}
	if got := complete("sshvpn", "co"); !slices.Equal(got, []string{"completion", "connect"}) {
		t.Errorf("sshvpn co<TAB> = %q", got)
	}
	if got := complete("sshvpn", "serve", "--backend", ""); !slices.Equal(got, []string{"kernel", "netstack"}) {
		t.Errorf("sshvpn serve --backend <TAB> = %q", got)
	}
	if got := complete("sshvpn", "connect", "-i", script); !slices.Equal(got, []string{script}) {
		t.Errorf("sshvpn connect -i <file><TAB> = %q, want the file", got)
	}
}

func testZshCompletion(t *testing.T, fpath string) {
	zsh := nstest.RequireTool(t, "zsh")
	home := t.TempDir()
	prog := fmt.Sprintf(`fpath=(%q $fpath); autoload -Uz compinit && compinit -u -d %q && print -r -- ${_comps[sshvpn]}`,
		fpath, filepath.Join(home, "zcompdump"))
	cmd := exec.Command(zsh, "-f", "-c", prog)
	cmd.Env = append(os.Environ(), "ZDOTDIR="+home, "HOME="+home)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "_sshvpn" {
		t.Errorf("zsh compinit: sshvpn completes with %q (err %v), want _sshvpn", out, err)
	}
	if out, err := exec.Command(zsh, "-n", filepath.Join(fpath, "_sshvpn")).CombinedOutput(); err != nil {
		t.Errorf("zsh -n _sshvpn: %v\n%s", err, out)
	}
}
