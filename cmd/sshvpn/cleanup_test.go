package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// cleanup of a state directory that never existed undoes nothing and
// makes no directory.
func TestCleanupMakesNoDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "never", "made")
	var out bytes.Buffer
	if err := cleanup([]string{"--state-dir", dir}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "nothing to undo") {
		t.Errorf("cleanup said %q", out.String())
	}
	if _, err := os.Stat(filepath.Dir(dir)); !os.IsNotExist(err) {
		t.Errorf("cleanup made %s: %v", filepath.Dir(dir), err)
	}
}
