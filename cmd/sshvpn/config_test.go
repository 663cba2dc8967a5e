package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay/gateway"
	"github.com/sshvpn/sshvpn/relay/gateway/gatewaytest"
	"github.com/sshvpn/sshvpn/stack/egress"
)

// writeConfig writes a config file of lines, mode 0600, in a directory of
// the test's own.
func writeConfig(t *testing.T, lines ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sshvpn.conf")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Keywords are the flag names without case and dashes, apart from their
// value by whitespace or =, with comments, blank lines and quotes, and
// repeatable ones append.
func TestConfigFileKeywords(t *testing.T) {
	path := writeConfig(t,
		"# sshvpn serve",
		"MaxStartups 10",
		"max-tunnels-per-key=3",
		"  PER-SOURCE-MAX-STARTUPS =  4   # a comment after the value",
		"",
		"\tListen\t\"127.0.0.1:2022\"",
		`DnsDomain "corp.example"`,
		"route 198.18.0.0/16",
		"Route=198.19.0.0/16",
		`deny "198.18.7.0/24:22/tcp"`,
		"client-alive-interval 1m",
	)
	c, err := parseServe([]string{"--config", path}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.limits.MaxStartups != 10 || c.limits.MaxTunnelsPerKey != 3 || c.limits.PerSourceMaxStartups != 4 {
		t.Errorf("limits %+v", c.limits)
	}
	if c.listen != "127.0.0.1:2022" || len(c.dnsDomains) != 1 || c.dnsDomains[0] != "corp.example" || c.aliveInterval.Minutes() != 1 {
		t.Errorf("listen %q, dns-domain %q, client-alive-interval %v", c.listen, c.dnsDomains, c.aliveInterval)
	}
	if len(c.routes) != 2 || c.routes[1] != netip.MustParsePrefix("198.19.0.0/16") {
		t.Errorf("routes %v, want both lines' networks", c.routes)
	}
	if len(c.rootless.rules) != 1 || c.rootless.rules[0].Allow {
		t.Errorf("rules %v", c.rootless.rules)
	}
	// Booleans take yes and no, as sshd_config's do.
	for v, want := range map[string]bool{"yes": true, "No": false, "true": true, "FALSE": false} {
		path := writeConfig(t, "backend kernel", "tun-address 198.18.0.1/24", "nat "+v)
		c, err := parseServe([]string{"--config", path}, io.Discard)
		if err != nil || c.nat != want {
			t.Errorf("nat %s: %v, %v", v, c, err)
		}
	}
}

// Flags on the command line win, and a repeatable one replaces the file's
// values rather than adding to them.
func TestConfigFileFlagsWin(t *testing.T) {
	path := writeConfig(t, "max-startups 10", "route 198.18.0.0/16", "route 198.19.0.0/16", "max-tunnels-per-key 3")
	c, err := parseServe([]string{"--max-startups", "20", "--config", path, "--route", "198.18.5.0/24"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.limits.MaxStartups != 20 || c.limits.MaxTunnelsPerKey != 3 {
		t.Errorf("max-startups %d (the flag's 20), max-tunnels-per-key %d (the file's 3)", c.limits.MaxStartups, c.limits.MaxTunnelsPerKey)
	}
	if len(c.routes) != 1 || c.routes[0] != netip.MustParsePrefix("198.18.5.0/24") {
		t.Errorf("routes %v, want only the command line's", c.routes)
	}
}

// Every problem of a file is reported, each with the file and line: an
// unknown keyword with the nearest known one, a keyword given twice, a bad
// value, quoting, a second value, a keyword only the command line takes.
func TestConfigFileErrors(t *testing.T) {
	path := writeConfig(t,
		"MaxStartup 5",            // 1
		"max-startups 5",          // 2
		"MaxStartups 6",           // 3: twice
		"max-tunnels-per-key ten", // 4
		`listen "127.0.0.1:22`,    // 5
		"backend netstack kernel", // 6
		"mtu",                     // 7
		"config /etc/other.conf",  // 8
		"route 198.18.0.0/16",     // 9: fine, and again:
		"route 198.19.0.0/16",     // 10
		"permit-tunnel maybe",     // 11
	)
	_, _, errs := loadServe([]string{"--config", path}, io.Discard)
	want := map[int]string{
		1:  `unknown keyword "MaxStartup"; the nearest is max-startups`,
		3:  "MaxStartups given again (first at line 2)",
		4:  `bad value "ten" for max-tunnels-per-key`,
		5:  "unterminated quote",
		6:  "takes one value",
		7:  "has no value",
		8:  "a config file names no other",
		11: `bad value "maybe" for permit-tunnel`,
	}
	got := map[int]string{}
	for _, err := range errs {
		ce, ok := errors.AsType[*configError](err)
		if !ok {
			t.Errorf("a problem without its line: %v", err)
			continue
		}
		got[ce.line] = err.Error()
	}
	for line, w := range want {
		if prefix := path + ":" + strconv.Itoa(line) + ": "; !strings.HasPrefix(got[line], prefix) || !strings.Contains(got[line], w) {
			t.Errorf("line %d: %q, want %q…%q", line, got[line], prefix, w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("problems on lines %v, want %d of them:\n%v", got, len(want), errs)
	}
}

// A config file another user could write is refused, as sshd's
// StrictModes refuses one.
func TestConfigFileModes(t *testing.T) {
	path := writeConfig(t, "max-startups 5")
	for _, mode := range []os.FileMode{0o664, 0o646, 0o620} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := parseServe([]string{"--config", path}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "writable by group or others") || !strings.Contains(err.Error(), "chmod go-w") {
			t.Errorf("mode %04o: %v, want a refusal", mode, err)
		}
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := parseServe([]string{"--config", path}, io.Discard); err != nil {
		t.Errorf("mode 0644: %v", err)
	}
}

// The repeatable list says which flags take several values: each of them
// appends when given twice.
func TestConfigRepeatablesAppend(t *testing.T) {
	sample := map[string][2]string{
		"tun-address": {"198.18.0.1/24", "2001:2::1/64"}, "route": {"198.18.0.0/16", "198.19.0.0/16"},
		"dns": {"198.18.0.53", "198.18.0.54"}, "dns-domain": {"a.example", "b.example"},
		"subnet": {"198.18.0.0/16", "2001:2::/64"}, "dns-address": {"198.18.0.53", "198.18.0.54"},
		"allow": {"198.18.0.0/16", "198.19.0.0/16"}, "deny": {"198.18.0.0/16", "198.19.0.0/16"},
	}
	for name := range repeatable {
		c := &serveConfig{}
		fs := serveFlags(c)
		v, ok := sample[name]
		if !ok {
			t.Fatalf("no sample values for %s", name)
		}
		fs.Set(name, v[0])
		fs.Set(name, v[1])
		if got := fs.Lookup(name).Value.String(); !strings.Contains(got, v[0]) || !strings.Contains(got, v[1]) {
			t.Errorf("%s given twice holds %q, want both values", name, got)
		}
	}
}

// writeKeys writes an authorized_keys file of lines, mode 0600.
func writeKeys(t *testing.T, lines ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "authorized_keys")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func keyText(s ssh.Signer) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey())))
}

// serve --check prints every problem of the config file and of
// authorized_keys as file:line and exits 1, or says the configuration is
// good and exits 0; it creates no host key and listens nowhere.
func TestServeCheck(t *testing.T) {
	key := keyText(gatewaytest.NewSigner(t))
	hostKey := filepath.Join(t.TempDir(), "host_key")
	goodKeys := writeKeys(t, "# clients", key, `tunnel="3" `+key)
	good := writeConfig(t, "listen 127.0.0.1:2022", "authorized-keys "+goodKeys, "host-key "+hostKey)
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"serve", "--config", good, "--check"}, &out, &errOut); err != nil {
		t.Fatalf("a good configuration: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "good; 2 keys in "+goodKeys) || errOut.Len() != 0 {
		t.Errorf("stdout %q, stderr %q", out.String(), errOut.String())
	}
	if _, err := os.Stat(hostKey); err == nil {
		t.Error("--check created the host key")
	}

	badKeys := writeKeys(t, key, `form="198.18.0.0/15" `+key, "", `tunnel="x" `+key, "ssh-ed25519 AAAA")
	bad := writeConfig(t, "MaxStartup 5", "authorized-keys "+badKeys, "host-key "+hostKey, "max-tunnels-per-key x")
	out.Reset()
	errOut.Reset()
	err := run(context.Background(), []string{"serve", "--check", "--config", bad}, &out, &errOut)
	if exitCode(err) != 1 || err.Error() != "" {
		t.Errorf("a bad configuration: %v (exit %d), want exit 1 with the problems printed already", err, exitCode(err))
	}
	lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
	for _, want := range []string{bad + ":1: unknown keyword", bad + ":4: bad value", badKeys + ":2: ", badKeys + ":4: ", badKeys + ":5: "} {
		n := 0
		for _, l := range lines {
			if strings.HasPrefix(l, want) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d lines start %q, want 1:\n%s", n, want, errOut.String())
		}
	}
	if len(lines) != 5 {
		t.Errorf("%d problems printed, want 5:\n%s", len(lines), errOut.String())
	}
	// A flag given on the command line is checked as well.
	errOut.Reset()
	err = run(context.Background(), []string{"serve", "--check", "--config", good, "--listen", "127.0.0.1:notaport"}, &out, &errOut)
	if exitCode(err) != 1 || !strings.Contains(errOut.String(), "--listen 127.0.0.1:notaport") {
		t.Errorf("a bad --listen: %v\n%s", err, errOut.String())
	}
}

// A SIGHUP's reload puts the file's limits, --deny and log level in force,
// logs the rest as needing a restart and keeps it, and keeps everything
// when the file has a problem.
func TestReloadConfig(t *testing.T) {
	keys := writeKeys(t, keyText(gatewaytest.NewSigner(t)))
	common := []string{"authorized-keys " + keys, "resolv-conf /dev/null", "host-key " + filepath.Join(t.TempDir(), "hk")}
	path := writeConfig(t, append(common, "listen 127.0.0.1:2022", "max-tunnels-per-key 4", "max-startups 30")...)
	args := []string{"--config", path, "--max-startups", "20"}
	c, fs, errs := loadServe(args, io.Discard)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	var logOut bytes.Buffer
	level := new(slog.LevelVar)
	log := slog.New(slog.NewTextHandler(&logOut, &slog.HandlerOptions{Level: level}))
	ns, stop, err := netstackBackend(c, log)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	ak, err := gateway.LoadAuthorizedKeys(keys, log)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := gateway.New(gateway.Config{HostKeys: []ssh.Signer{gatewaytest.NewSigner(t)}, Keys: ak, Backend: ns, Limits: c.limits, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	r := newReloader(args, c, fs, ak, srv, ns, level, log)
	target := netip.MustParseAddrPort("198.18.7.1:22")
	if ok, _ := ns.Policy().Decide(target, egress.ProtoTCP); !ok {
		t.Fatal("the target is denied before the reload")
	}

	os.WriteFile(path, []byte(strings.Join(append(common, "listen 127.0.0.1:2023", "max-tunnels-per-key 2",
		"max-startups 40", "deny 198.18.7.0/24", "log-level debug", "mtu 9000"), "\n")), 0o600)
	r.reload()
	if l := srv.Limits(); l.MaxTunnelsPerKey != 2 || l.MaxStartups != 20 {
		t.Errorf("after the reload: max-tunnels-per-key %d (want the file's 2), max-startups %d (want the flag's 20)", l.MaxTunnelsPerKey, l.MaxStartups)
	}
	if ok, _ := ns.Policy().Decide(target, egress.ProtoTCP); ok {
		t.Error("the reloaded --deny is not in force")
	}
	if level.Level() != slog.LevelDebug {
		t.Errorf("log level %v, want debug", level.Level())
	}
	if !strings.Contains(logOut.String(), "needs a restart: listen, mtu;") {
		t.Errorf("no warning that listen and mtu need a restart:\n%s", logOut.String())
	}
	if r.inForce["listen"] != "127.0.0.1:2022" {
		t.Errorf("listen in force %q, want the old one kept", r.inForce["listen"])
	}

	// A file with a problem changes nothing, and says where the problem is.
	logOut.Reset()
	os.WriteFile(path, []byte(strings.Join(append(common, "max-tunnels-per-key 7", "MaxStartup 3"), "\n")), 0o600)
	r.reload()
	if l := srv.Limits(); l.MaxTunnelsPerKey != 2 {
		t.Errorf("a file with a problem changed max-tunnels-per-key to %d", l.MaxTunnelsPerKey)
	}
	if ok, _ := ns.Policy().Decide(target, egress.ProtoTCP); ok {
		t.Error("a file with a problem dropped the --deny in force")
	}
	if !strings.Contains(logOut.String(), "config not reloaded") || !strings.Contains(logOut.String(), path+":5: unknown keyword") {
		t.Errorf("the refused reload's log:\n%s", logOut.String())
	}
}
