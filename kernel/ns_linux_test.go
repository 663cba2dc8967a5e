//go:build linux

package kernel

import (
	"bytes"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/sshvpn/sshvpn/relay"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true but not root: .ci/run must run the suite as root")
	}
	t.Skip("needs root for tun and netns; run: sudo -E go test ./kernel/...")
}

// inNewNS runs fn on this goroutine's thread moved into a fresh network
// namespace, so that nothing fn does to links, addresses, routes, sysctls
// under net. or nftables reaches the host. The thread stays locked: Go then
// discards it when the test goroutine ends, instead of reusing a thread
// whose namespace was switched. Child processes started from fn inherit the
// namespace, because Go forks on the calling thread.
//
// Goroutines fn starts run on other threads, in the host's namespace: they
// may use what fn opened (a Tun, a socket) but must not open anything.
func inNewNS(t *testing.T, fn func()) {
	t.Helper()
	requireRoot(t)
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatalf("get current netns: %v", err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		t.Fatalf("new netns: %v", err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			// The thread is locked and discarded anyway; say so loudly.
			t.Errorf("restore netns: %v", err)
		}
		ns.Close()
	}()
	fn()
}

// run runs a command in the calling thread's namespace and returns its
// output, failing the test if it fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func requireTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true but %s is missing: .ci/run must install it", name)
	}
	t.Skipf("needs %s; install it (apt-get install nftables iproute2)", name)
}

// open opens a Tun and closes it when the test ends.
func open(t *testing.T, mode relay.Mode, unit uint32) *Tun {
	t.Helper()
	tun, err := Open(Config{Mode: mode, Unit: unit})
	if err != nil {
		t.Fatalf("Open(%v, %d): %v", mode, unit, err)
	}
	t.Cleanup(func() { tun.Close() })
	return tun
}

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

// testUndo returns an Undo that logs into the returned buffer at debug level.
func testUndo(t *testing.T) (*Undo, *logBuffer) {
	t.Helper()
	var buf logBuffer
	u := NewUndo(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("undo log:\n%s", buf.String())
		}
	})
	return u, &buf
}

func TestInNewNSIsolates(t *testing.T) {
	requireTool(t, "ip")
	inNewNS(t, func() {
		links := run(t, "ip", "-o", "link")
		if strings.Count(links, "\n") != 1 || !strings.Contains(links, "lo:") {
			t.Fatalf("child process is not in the fresh namespace; ip link:\n%s", links)
		}
	})
}
