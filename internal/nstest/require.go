package nstest

import (
	"os"
	"os/exec"
	"testing"
)

// underCI reports whether the suite runs in CI, where every skip is a failure
// (.ci/run sets CI=true).
func underCI() bool { return os.Getenv("CI") == "true" }

// skipOrFatal skips the test with why, or fails it under CI=true, where the
// environment is supposed to be complete.
func skipOrFatal(t testing.TB, why string) {
	t.Helper()
	if underCI() {
		t.Fatalf("CI=true but %s: .ci/run must provide it", why)
	}
	t.Skip(why)
}

// RequireRoot skips the test when it does not run as root, or fails it under
// CI=true. Namespaces, veth pairs, tun devices and sshd all need root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	skipOrFatal(t, "needs root for network namespaces; run: sudo -E go test ./...")
}

// RequireTool returns the path of the executable name, found by exec.LookPath.
// When it is missing the test skips, or fails under CI=true.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		skipOrFatal(t, "needs "+name+" in PATH ("+err.Error()+"); apt-get install it, see .ci/run")
	}
	return p
}
