package gateway_test

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/gateway"
	"github.com/sshvpn/sshvpn/relay/gateway/gatewaytest"
	"github.com/sshvpn/sshvpn/relay/relaytest"
)

// CheckAuthorizedKeys names every line the gateway would skip, malformed or
// skipped as sshd skips it, with its number, and counts the keys it keeps.
func TestCheckAuthorizedKeysNamesEveryLine(t *testing.T) {
	good := gatewaytest.NewSigner(t)
	path := filepath.Join(t.TempDir(), "authorized_keys")
	content := strings.Join([]string{
		"# comment",
		`tunnel="x" ` + keyLine(good),               // 2: bad tunnel=
		keyLine(good),                               // 3: good
		`from="198.18.0.0/15 ` + keyLine(good),      // 4: unterminated quote: not a key line
		`form="198.18.0.0/15" ` + keyLine(good),     // 5: unknown option
		`expiry-time="2026" ` + keyLine(good),       // 6
		`permitopen="nohost" ` + keyLine(good),      // 7
		"ssh-ed25519 AAAAnotbase64",                 // 8
		"",                                          // 9
		`tunnel="5",no-pty ` + keyLine(good),        // 10: good
		`environment="SSHVPN_X=1" ` + keyLine(good), // 11: unknown sshvpn setting
	}, "\n") + "\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	n, skipped, err := gateway.CheckAuthorizedKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("keys = %d, want 2", n)
	}
	want := map[int]string{2: "tunnel=", 4: "not a public key line", 5: "unknown option", 6: "expiry-time=", 7: "permitopen=", 8: "not a public key line", 11: "SSHVPN_X"}
	var lines []int
	for _, le := range skipped {
		lines = append(lines, le.Line)
		prefix := path + ":" + strconv.Itoa(le.Line) + ": "
		if !strings.HasPrefix(le.Error(), prefix) || !strings.Contains(le.Error(), want[le.Line]) {
			t.Errorf("line %d: %q, want %q… saying %q", le.Line, le.Error(), prefix, want[le.Line])
		}
	}
	if len(lines) != len(want) {
		t.Errorf("skipped lines %v, want the %d lines %v", lines, len(want), want)
	}
	// The gateway, running, uses the same lines: the good key logs in.
	keys, err := gateway.LoadAuthorizedKeys(path, slog.New(slog.DiscardHandler))
	if err == nil {
		t.Fatalf("LoadAuthorizedKeys took malformed lines at start (%d keys)", keys.Len())
	}
}

// A file whose every line was skipped is not "missing or empty": the
// refusal names the lines and why, so the operator looks at the right
// thing.
func TestNoUsableKeyNamesTheLines(t *testing.T) {
	key := gatewaytest.NewSigner(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "authorized_keys")
	content := "# only skipped lines\n" + `form="198.18.0.1" ` + keyLine(key) + "\n\n" + `verify-required ` + keyLine(key) + "\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := gateway.LoadAuthorizedKeys(path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	_, err = keys.Lookup(key.PublicKey(), "root", localhost)
	if err == nil || strings.Contains(err.Error(), "missing or empty") ||
		!strings.Contains(err.Error(), path+" has no usable key: line 2: ") || !strings.Contains(err.Error(), ", line 4: ") {
		t.Errorf("refusal = %v, want it to say %s has no usable key and name lines 2 and 4", err, path)
	}
	missing, err := gateway.LoadAuthorizedKeys(filepath.Join(dir, "none"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err = missing.Lookup(key.PublicKey(), "root", localhost); err == nil || !strings.Contains(err.Error(), "missing or empty") {
		t.Errorf("refusal for a missing file = %v, want missing or empty", err)
	}
}

// x/crypto asks the callback once per key offered; the refusal is one log
// line, not that line and the handshake's failure repeating it.
func TestRefusedKeyLoggedOnce(t *testing.T) {
	var log relaytest.Buffer
	g := gatewaytest.Start(t, gatewaytest.Options{Log: &log})
	stranger := gatewaytest.NewSigner(t)
	cfg := g.ClientConfig("")
	cfg.Auth = []ssh.AuthMethod{ssh.PublicKeys(stranger)}
	if c, err := ssh.Dial("tcp", g.Addr, cfg); err == nil {
		c.Close()
		t.Fatal("a key not in authorized_keys logged in")
	}
	fp := ssh.FingerprintSHA256(stranger.PublicKey())
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(log.String(), fp) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // room for a second line, were there one
	if n := strings.Count(log.String(), fp); n != 1 {
		t.Errorf("the refused key is named on %d log lines, want 1:\n%s", n, log.String())
	}
}

// SetLimits applies to what is admitted next: a lowered per-key tunnel
// limit refuses the next tunnel and keeps the ones held.
func TestSetLimitsAppliesToNextAdmission(t *testing.T) {
	g := gatewaytest.Start(t, gatewaytest.Options{Limits: gateway.Limits{MaxTunnelsPerKey: 4}})
	c := g.Dial(t)
	var held []ssh.Channel
	for i := range 2 {
		ch, err := openTunnel(c, relay.PointToPoint, relay.AnyUnit)
		if err != nil {
			t.Fatalf("tunnel %d: %v", i, err)
		}
		held = append(held, ch)
	}
	l := g.Server.Limits()
	l.MaxTunnelsPerKey = 2
	g.Server.SetLimits(l)
	_, err := openTunnel(c, relay.PointToPoint, relay.AnyUnit)
	if oe, ok := errors.AsType[*ssh.OpenChannelError](err); !ok || !strings.Contains(oe.Message, "already holds 2 tunnels") {
		t.Fatalf("a third tunnel under a lowered limit of 2: %v", err)
	}
	// The held tunnels still carry packets.
	pkt := withAF(2, relaytest.IPv4("reload"))
	if _, err := held[0].Write(pkt); err != nil {
		t.Fatalf("a held tunnel after the reload: %v", err)
	}
	if got := g.Server.Limits().MaxStartups; got != gateway.DefaultLimits.MaxStartups {
		t.Errorf("zero MaxStartups became %d, want the default", got)
	}
}
