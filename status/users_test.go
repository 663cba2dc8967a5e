package status

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Peers of other users are this test binary run as their uid, in helper
// mode (TestHelper), from a directory they may enter.

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true but not root: needs root to run a peer as another uid")
	}
	t.Skip("needs root to run a peer as another uid; run: sudo -E go test ./status/")
}

// sharedBase makes a directory every uid may enter, with a copy of the
// test binary in it: t.TempDir's parent and go test's own directory are
// their user's alone.
func sharedBase(t *testing.T) (base, bin string) {
	t.Helper()
	base, err := os.MkdirTemp("", "status-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin = filepath.Join(base, "status.test")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return base, bin
}

// helper is the test binary bin, as uid, doing what (fetch, query or
// serve) with path.
func helper(bin string, uid int, what, path string) *exec.Cmd {
	cmd := exec.Command(bin, "-test.run=^TestHelper$")
	cmd.Env = append(os.Environ(), "STATUS_HELPER="+what, "STATUS_PATH="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	return cmd
}

// runAs runs a fetch or query helper to its end and returns its output.
func runAs(t *testing.T, bin string, uid int, what, path string) string {
	t.Helper()
	out, err := helper(bin, uid, what, path).CombinedOutput()
	if err != nil {
		t.Fatalf("helper %s as uid %d: %v\n%s", what, uid, err, out)
	}
	return string(out)
}

// serveAs starts a server of uid at path that answers every peer with
// report and never checks who it is: another user's fake. It stops with
// the test.
func serveAs(t *testing.T, bin string, uid int, path string) {
	t.Helper()
	cmd := helper(bin, uid, "serve", path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close() // the helper's signal to stop
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "READY\n" {
		cmd.Process.Kill()
		t.Fatalf("serve helper as uid %d: %q, %v", uid, line, err)
	}
}

// fakeReport is what a fake server says.
var fakeReport = Report{Schema: Schema, Role: "gateway", PID: 1, Gateway: &Gateway{Listen: "made up"}}

// TestHelper is the other users' side of the tests above; alone it does
// nothing.
func TestHelper(t *testing.T) {
	path := os.Getenv("STATUS_PATH")
	switch os.Getenv("STATUS_HELPER") {
	case "fetch":
		if _, err := Fetch(context.Background(), path); err != nil {
			fmt.Println("FETCH ERR", err)
			return
		}
		fmt.Println("FETCH OK")
	case "query":
		rs, err := Query(context.Background(), path)
		if err != nil {
			fmt.Println("QUERY ERR", err)
		}
		fmt.Println("QUERY REPORTS", len(rs))
	case "serve":
		fakeServe(t, path)
	default:
		t.Skip("a helper run as another uid by the tests of this package")
	}
}

func fakeServe(t *testing.T, path string) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := os.Chmod(path, 0o777); err != nil {
		t.Fatal(err)
	}
	go func() {
		io.Copy(io.Discard, os.Stdin)
		ln.Close()
	}()
	fmt.Println("READY")
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		json.NewEncoder(c).Encode(fakeReport)
		c.Close()
	}
}

// TestForeignServerRefused: a server another user made is not believed.
// uid 65534 makes a directory first, as it may under /tmp, and serves a
// made-up report in it: uid 65533 is refused by the directory and by the
// server's credentials, and told whose they are. Root, asking that
// directory, believes its owner; once others may write it, neither.
func TestForeignServerRefused(t *testing.T) {
	requireRoot(t)
	base, bin := sharedBase(t)
	dir := filepath.Join(base, "sshvpn-65533")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, SocketName("serve", 1))
	serveAs(t, bin, 65534, sock)

	out := runAs(t, bin, 65533, "fetch", sock)
	if want := "is served by " + uidName(65534) + ", not by you (uid 65533) or root"; !strings.Contains(out, want) {
		t.Errorf("uid 65533 fetched from uid 65534's server; want refused with %q:\n%s", want, out)
	}
	out = runAs(t, bin, 65533, "query", dir)
	if want := "status directory " + dir + " belongs to " + uidName(65534); !strings.Contains(out, want) || !strings.Contains(out, "QUERY REPORTS 0") {
		t.Errorf("uid 65533 queried uid 65534's directory; want refused with %q:\n%s", want, out)
	}

	// Root believes the owner of a directory closed to others: the
	// directory of sshvpn.service's dynamic user is such a one.
	if r, err := Fetch(context.Background(), sock); err != nil || r.Gateway == nil || r.Gateway.Listen != "made up" {
		t.Errorf("root, in uid 65534's own directory: %+v, %v; want its report", r, err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := Fetch(context.Background(), sock); !errors.Is(err, errForeignServer) {
		t.Errorf("root, in a directory anyone may write: %v; want errForeignServer", err)
	}
	if _, err := Query(context.Background(), dir); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("root queried a directory anyone may write: %v", err)
	}
}

// TestForeignPeerHoldsNoSlot: while this user's peers hold every slot,
// another user's peer is refused at once, not after a slot comes free.
func TestForeignPeerHoldsNoSlot(t *testing.T) {
	requireRoot(t)
	base, bin := sharedBase(t)
	release := make(chan struct{})
	inside := make(chan struct{}, maxPeers)
	s, err := Listen(filepath.Join(base, "state"), "serve", func() Report {
		inside <- struct{}{}
		<-release
		return Report{}
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	defer close(release)
	// Open to everyone, so that only the credentials check refuses.
	os.Chmod(filepath.Dir(s.Path()), 0o755)
	os.Chmod(s.Path(), 0o666)
	for range maxPeers {
		c, err := net.Dial("unix", s.Path())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	for range maxPeers {
		<-inside
	}
	out := runAs(t, bin, 65534, "fetch", s.Path())
	if !strings.Contains(out, "closed without an answer") {
		t.Errorf("uid 65534, with every slot held: want refused at once, got:\n%s", out)
	}
}
