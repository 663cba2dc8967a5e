package status

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func listen(t *testing.T, dir, role string, r Report) *Server {
	t.Helper()
	s, err := Listen(dir, role, func() Report { return r }, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestServeModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s := listen(t, dir, "serve", Report{Role: "gateway", PID: os.Getpid(), Gateway: &Gateway{Listen: ":2222"}})
	if want := filepath.Join(dir, SocketName("serve", os.Getpid())); s.Path() != want {
		t.Errorf("socket %s, want %s", s.Path(), want)
	}
	for path, want := range map[string]os.FileMode{dir: os.ModeDir | 0o700, s.Path(): os.ModeSocket | 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
		}
	}
	rs, err := Query(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Schema != Schema || rs[0].Gateway == nil || rs[0].Gateway.Listen != ":2222" {
		t.Errorf("got %+v", rs)
	}
	s.Close()
	if _, err := os.Stat(s.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after Close: %v", err)
	}
	if _, err := Query(context.Background(), dir); !errors.Is(err, ErrNoProcess) {
		t.Errorf("after Close: %v, want ErrNoProcess", err)
	}
}

// TestDirTightened: a state directory that others may enter is made
// 0700 before a socket goes in it.
func TestDirTightened(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	listen(t, dir, "serve", Report{})
	fi, _ := os.Stat(dir)
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("mode %v, want 0700", fi.Mode().Perm())
	}
}

// TestPeersBounded: peers that connect and never read hold a slot each
// until the deadline, and no more than maxPeers are served at once.
func TestPeersBounded(t *testing.T) {
	dir := t.TempDir()
	var inside, most atomic.Int32
	s, err := Listen(dir, "serve", func() Report {
		n := inside.Add(1)
		defer inside.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
		return Report{Gateway: &Gateway{}}
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	done := make(chan error)
	for range 3 * maxPeers {
		go func() {
			_, err := Fetch(context.Background(), s.Path())
			done <- err
		}()
	}
	for range 3 * maxPeers {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	if m := most.Load(); m > maxPeers || m < 2 {
		t.Errorf("%d peers served at once, want 2..%d", m, maxPeers)
	}
}

// TestPeerDeadline: peers that connect and never read a report larger
// than the socket buffer hold every slot until the server gives up on
// them, about peerDeadline later; then the slots serve again, and each
// stalled peer is left with a cut-off report.
func TestPeerDeadline(t *testing.T) {
	big := Report{Role: "gateway", Gateway: &Gateway{Listen: strings.Repeat("x", 4<<20)}}
	s := listen(t, t.TempDir(), "serve", big)
	start := time.Now()
	var stalled []net.Conn
	defer func() {
		for _, c := range stalled {
			c.Close()
		}
	}()
	for range maxPeers {
		c, err := net.Dial("unix", s.Path())
		if err != nil {
			t.Fatal(err)
		}
		stalled = append(stalled, c)
	}
	c, err := net.Dial("unix", s.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * peerDeadline))
	var r Report
	if err := json.NewDecoder(c).Decode(&r); err != nil {
		t.Fatalf("a peer after %d stalled ones got no report in %v: %v", maxPeers, time.Since(start).Round(time.Millisecond), err)
	}
	if took := time.Since(start); took > 2*peerDeadline {
		t.Errorf("a slot came free after %v, want about %v", took.Round(time.Millisecond), peerDeadline)
	}
	for i, c := range stalled {
		c.SetReadDeadline(time.Now().Add(peerDeadline))
		n, err := io.Copy(io.Discard, c)
		if err != nil {
			t.Errorf("stalled peer %d: %v after %d bytes: the server kept the connection open", i, err, n)
		} else if n > 4<<20 {
			t.Errorf("stalled peer %d: got all %d bytes, want a report cut off", i, n)
		}
	}
}

// TestOtherUserRefused runs a status query as uid 65534 against a socket
// of root's: the socket's mode refuses it, and the message says whose it
// is and what to do.
func TestOtherUserRefused(t *testing.T) {
	requireRoot(t)
	base, bin := sharedBase(t)
	dir := filepath.Join(base, "state")
	s := listen(t, dir, "serve", Report{Role: "gateway", Gateway: &Gateway{}})
	out := runAs(t, bin, 65534, "fetch", s.Path())
	if !strings.Contains(out, "FETCH ERR") || !strings.Contains(out, "root") {
		t.Errorf("uid 65534 was not refused, or not told whose the socket is:\n%s", out)
	}

	// With the directory open and the socket 0666, the credentials check
	// still refuses it.
	os.Chmod(dir, 0o755)
	os.Chmod(s.Path(), 0o666)
	if out := runAs(t, bin, 65534, "fetch", s.Path()); !strings.Contains(out, "FETCH ERR") {
		t.Errorf("uid 65534 read the report through an open socket:\n%s", out)
	}
}
