package status

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

// bindOnly leaves at path what a killed process leaves, or what a
// starting one shows for a moment: a socket bound and not listening.
func bindOnly(t *testing.T, path string) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
}

// deadPID is the pid of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// TestStaleSkipped: a socket whose process died is removed by Listen and
// by Query; a refusing socket whose process runs (starting, or a pid
// reused) is skipped without a word and left alone; the live process
// still answers.
func TestStaleSkipped(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, SocketName("connect", deadPID(t)))
	starting := filepath.Join(dir, SocketName("connect", os.Getpid()))
	bindOnly(t, stale)
	bindOnly(t, starting)
	listen(t, dir, "serve", Report{Role: "gateway", PID: 1, Gateway: &Gateway{}})
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Listen left the stale socket: %v", err)
	}
	// One more, made after Listen, is for Query to remove.
	bindOnly(t, stale)
	rs, err := Query(context.Background(), dir)
	if err != nil || len(rs) != 1 {
		t.Fatalf("Query: %v, %d reports", err, len(rs))
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Query left the stale socket: %v", err)
	}
	if _, err := os.Stat(starting); err != nil {
		t.Errorf("a live process's socket was removed: %v", err)
	}
	if _, err := Fetch(context.Background(), starting); !errors.Is(err, errNotListening) {
		t.Errorf("Fetch of a live process's refusing socket: %v, want errNotListening", err)
	}
}

// TestLiveSocketKept races Listen and Close against RemoveStale: bound
// and not yet listening, a new socket refuses connections as a dead
// one does, and it must never be taken for stale.
func TestLiveSocketKept(t *testing.T) {
	dir := t.TempDir()
	stop := make(chan struct{})
	var sweeper sync.WaitGroup
	sweeper.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				RemoveStale(dir)
			}
		}
	})
	const rounds = 2000
	lost := 0
	for range rounds {
		s, err := Listen(dir, "serve", func() Report { return Report{} }, nil)
		if errors.Is(err, os.ErrNotExist) { // removed before its chmod
			lost++
			continue
		}
		if err != nil {
			close(stop)
			sweeper.Wait()
			t.Fatal(err)
		}
		if _, err := os.Stat(s.Path()); err != nil {
			lost++
		}
		s.Close()
	}
	close(stop)
	sweeper.Wait()
	if lost > 0 {
		t.Errorf("RemoveStale removed a live process's socket in %d of %d rounds", lost, rounds)
	}
}
