package kernel

import (
	"errors"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// assertOnlyFiles fails unless dir holds exactly the files named, hidden
// ones included.
func assertOnlyFiles(t *testing.T, dir string, want ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s holds %q, want %q", dir, got, want)
	}
}

// When the journal cannot be renamed into place, OpenJournal fails naming
// both names and the cause, and removes the file under the hidden one:
// Recover would never read it there. The next try works.
func TestOpenJournalRenameFails(t *testing.T) {
	dir := t.TempDir()
	full := func(old, new string) error {
		return &os.LinkError{Op: "rename", Old: old, New: new, Err: syscall.ENOSPC}
	}
	j, err := openJournal(dir, nil, full)
	if err == nil {
		j.Close()
		t.Fatal("OpenJournal succeeded with the rename failing")
	}
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), dir+"/.undo-") || !strings.Contains(err.Error(), dir+"/undo-") {
		t.Errorf("OpenJournal = %v; want ENOSPC, naming the journal's hidden name and its own in %s", err, dir)
	}
	assertOnlyFiles(t, dir)

	j, err = OpenJournal(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	assertOnlyFiles(t, dir)
}
