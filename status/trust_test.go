package status

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOpenDirRefused: a status directory that others may write is not
// read, even this user's own: anyone could have put a socket there.
func TestOpenDirRefused(t *testing.T) {
	dir := t.TempDir()
	listen(t, dir, "serve", Report{Role: "gateway", Gateway: &Gateway{}})
	for _, mode := range []os.FileMode{0o770, 0o703} {
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		rs, err := Query(context.Background(), dir)
		if len(rs) != 0 || err == nil || !strings.Contains(err.Error(), "status directory "+dir+" is writable by group or others") {
			t.Errorf("mode %v: %d reports, %v; want the directory refused", mode, len(rs), err)
		}
	}
	// A symlink in its place could be turned elsewhere between the check
	// and the read.
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Query(context.Background(), link); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("a symlinked directory: %v; want refused", err)
	}
}
