package nstest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Main runs a package's tests with the sshvpn binary built into a temporary
// directory (its path goes to *bin), and fails the run when a namespace of
// this process outlives the tests. after, if not nil, runs once the tests
// are done. Call it from TestMain.
func Main(m *testing.M, bin *string, after func()) {
	MainBuilding(m, "github.com/sshvpn/sshvpn/cmd/sshvpn", bin, after)
}

// MainBuilding is Main for the program in pkg (a package path, or "." for
// the package under test), so that its tests run the real binary as the
// harness does.
func MainBuilding(m *testing.M, pkg string, bin *string, after func()) {
	dir, err := os.MkdirTemp("", "sshvpn-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	SweepDead()
	*bin = filepath.Join(dir, "prog")
	out, err := exec.Command("go", "build", "-o", *bin, pkg).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
		os.Exit(1)
	}
	code := m.Run()
	if after != nil {
		after()
	}
	os.RemoveAll(dir)
	if left, err := Leftovers(); err != nil || len(left) > 0 {
		fmt.Fprintf(os.Stderr, "namespaces left behind: %v (err %v)\n", left, err)
		code = 1
	}
	os.Exit(code)
}
