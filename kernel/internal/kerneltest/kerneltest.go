//go:build linux

// Package kerneltest is what the tests of kernel and its sub-packages share:
// a thread of their own in a fresh network namespace, ip(8) and friends run
// there, and the rule that a test needing root or a tool skips with the
// reason, except under CI=true, where it fails.
package kerneltest

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

// RequireRoot skips the test when not root, or fails it under CI=true.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true but not root: .ci/run must run the suite as root")
	}
	t.Skip("needs root for tun and netns; run: sudo -E go test ./kernel/...")
}

// RequireTool skips the test when name is not on PATH, or fails it under
// CI=true.
func RequireTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true but %s is missing: .ci/run must install it", name)
	}
	t.Skipf("needs %s; install it (apt-get install nftables iproute2)", name)
}

// InNewNS runs fn on this goroutine's thread moved into a fresh network
// namespace, so that nothing fn does to links, addresses, routes, sysctls
// under net. or nftables reaches the host. The thread stays locked: Go then
// discards it when the test goroutine ends, instead of reusing a thread
// whose namespace was switched. Child processes started from fn inherit the
// namespace, because Go forks on the calling thread.
//
// Goroutines fn starts run on other threads, in the host's namespace: they
// may use what fn opened (a Tun, a socket) but must not open anything.
func InNewNS(t testing.TB, fn func()) {
	t.Helper()
	RequireRoot(t)
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

// Run runs a command in the calling thread's namespace and returns its
// output, failing the test if it fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
