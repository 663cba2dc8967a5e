package sshchan

import (
	"strings"
	"testing"

	"github.com/sshvpn/sshvpn/relay"
)

func TestPeerOf(t *testing.T) {
	for v, want := range map[string]Peer{
		"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3": OpenSSH,
		"SSH-2.0-sshvpn":                         SSHVPN,
		"SSH-2.0-Go":                             Stock,
		"SSH-2.0-dropbear_2022.83":               Stock,
	} {
		if got := PeerOf([]byte(v)); got != want {
			t.Errorf("PeerOf(%q) = %d, want %d", v, got, want)
		}
	}
	if OpenSSH.priorCharge() != 4 || SSHVPN.priorCharge() != 0 || Stock.priorCharge() != 0 {
		t.Error("only OpenSSH charges 4 bytes per message beyond the message")
	}
}

// When the shim cannot bind, a stock peer is refused with the cause and
// the version, and later tunnels to stock peers are refused before they are
// accepted; an sshvpn peer is served by re-framing the stream.
func TestNewFailsClosedWithoutTheShim(t *testing.T) {
	t.Cleanup(func() { bindFailure.Store(nil) })
	cfg := Config{Mode: relay.PointToPoint, MTU: 1500, PeerVersion: []byte("SSH-2.0-OpenSSH_10.0")}
	if err := Check(cfg.PeerVersion); err != nil {
		t.Fatalf("Check before any failure: %v", err)
	}
	c, err := New(fakeChannel{}, cfg)
	if err == nil {
		t.Fatalf("New toward OpenSSH without the shim = %v, want an error", c)
	}
	for _, want := range []string{"golang/go#70029", "x/crypto/ssh ", "refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	for _, v := range []string{"SSH-2.0-OpenSSH_9.2", "SSH-2.0-Go"} {
		if Check([]byte(v)) == nil {
			t.Errorf("Check(%q) after a failed bind = nil, want the refusal", v)
		}
	}
	cfg.PeerVersion = []byte("SSH-2.0-sshvpn")
	if err := Check(cfg.PeerVersion); err != nil {
		t.Errorf("Check(sshvpn) = %v, want nil: the stream is exact between sshvpn peers", err)
	}
	c, err = New(fakeChannel{}, cfg)
	if err != nil || c.shim != nil || c.stream == nil {
		t.Fatalf("New toward sshvpn without the shim = %+v, %v; want stream mode", c, err)
	}
}
