//go:build linux

package kernel

import (
	"bytes"
	"log/slog"
	"net/netip"
	"sync"
	"testing"

	"github.com/sshvpn/sshvpn/kernel/internal/kerneltest"
	"github.com/sshvpn/sshvpn/kernel/tun"
	"github.com/sshvpn/sshvpn/relay"
)

// The namespace helpers the tests share with kernel's sub-packages.
var (
	requireRoot = kerneltest.RequireRoot
	requireTool = kerneltest.RequireTool
	inNewNS     = kerneltest.InNewNS
	run         = kerneltest.Run
)

// open opens a Tun and closes it when the test ends.
func open(t *testing.T, mode relay.Mode, unit uint32) *tun.Tun {
	t.Helper()
	dev, err := tun.Open(tun.Config{Mode: mode, Unit: unit})
	if err != nil {
		t.Fatalf("Open(%v, %d): %v", mode, unit, err)
	}
	t.Cleanup(func() { dev.Close() })
	return dev
}

// upTun opens a tun in the test's namespace, sets it up with 198.18.0.1/24
// and 2001:2::1/64. The namespace dies with the test, so nothing is reverted.
func upTun(t *testing.T) (*tun.Tun, *undoLog) {
	t.Helper()
	dev := open(t, relay.PointToPoint, relay.AnyUnit)
	u, _ := testUndo(t)
	for _, err := range []error{
		u.LinkUp(dev.Name()),
		u.AddAddress(dev.Name(), netip.MustParsePrefix("198.18.0.1/24"), false),
		u.AddAddress(dev.Name(), netip.MustParsePrefix("2001:2::1/64"), false),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return dev, u
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// logBuffer collects log output for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testUndo returns an undoLog that logs into the returned buffer at debug level.
func testUndo(t *testing.T) (*undoLog, *logBuffer) {
	t.Helper()
	var buf logBuffer
	u := newUndo(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("undo log:\n%s", buf.String())
		}
	})
	return u, &buf
}
