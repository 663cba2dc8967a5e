package nstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// runTimeout bounds every helper command (ip, ping, ssh-keygen) so that a hung
// tool fails the test instead of the whole binary's -timeout.
const runTimeout = 2 * time.Minute

// dialTimeout bounds NS.Dial.
const dialTimeout = 10 * time.Second

// nsSeq numbers the namespaces of this process.
var nsSeq atomic.Uint64

// NS is a network namespace that lives as long as the test that made it.
type NS struct {
	// Name is the namespace's name under /run/netns, "sshvpn-<pid>-<n>".
	Name string

	mu    sync.Mutex
	procs []*Proc // started by Start, killed by the namespace's cleanup
	links int     // veth ends created in this namespace, for interface names
}

// Prefix returns the name prefix of every namespace this process creates.
func Prefix() string { return fmt.Sprintf("sshvpn-%d-", os.Getpid()) }

// New creates a namespace with lo up. Its cleanup kills every process still
// running inside it (those from Start first, then any other, by PID) and
// deletes it, also when the test fails. It calls RequireRoot and needs ip(8).
func New(t testing.TB) *NS {
	t.Helper()
	RequireRoot(t)
	RequireTool(t, "ip")
	n := &NS{Name: Prefix() + strconv.FormatUint(nsSeq.Add(1), 10)}
	if out, err := ipCmd("netns", "add", n.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", n.Name, err, out)
	}
	t.Cleanup(func() { n.destroy(t) })
	n.Run(t, "ip", "link", "set", "lo", "up")
	return n
}

// String returns the namespace's name.
func (n *NS) String() string { return n.Name }

// Cmd returns a command that runs args inside the namespace
// (ip netns exec NAME args...). ip execs args in place, so the command's PID
// is the PID of args[0] itself.
func (n *NS) Cmd(args ...string) *exec.Cmd {
	return ipCmd(append([]string{"netns", "exec", n.Name}, args...)...)
}

// Run runs args inside the namespace and returns the combined output; it fails
// the test, showing the output, when the command fails or outlives runTimeout.
func (n *NS) Run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := n.run(args...)
	if err != nil {
		t.Fatalf("in %s: %s: %v\n%s", n.Name, strings.Join(args, " "), err, out)
	}
	return out
}

// run runs args inside the namespace with runTimeout.
func (n *NS) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name}, args...)...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	return buf.String(), err
}

// Do runs fn on the calling goroutine, locked to its OS thread and switched
// into the namespace, and switches back afterwards. Sockets fn creates belong
// to the namespace for good and may be used from any goroutine later; goroutines
// fn starts do NOT run in the namespace. fn may call t.Fatal.
func (n *NS) Do(t testing.TB, fn func()) {
	t.Helper()
	err := n.do(fn, func(err error) { t.Errorf("%v", err) })
	if err != nil {
		t.Fatal(err)
	}
}

// do is Do without a test, for goroutines other than the test's: it returns
// the error of entering the namespace (fn then does not run) and hands that
// of leaving it, which runs deferred, also when fn ends its goroutine, to
// leaveErr.
func (n *NS) do(fn func(), leaveErr func(error)) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get current netns: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(n.Name)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open netns %s: %w", n.Name, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns %s: %w", n.Name, err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: the runtime then ends it with the
			// goroutine instead of reusing a thread in the wrong namespace.
			leaveErr(fmt.Errorf("leave netns %s: %w", n.Name, err))
			return
		}
		runtime.UnlockOSThread()
	}()
	fn()
	return nil
}

// Listen opens a listener inside the namespace (see net.Listen).
func (n *NS) Listen(t testing.TB, network, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	var err error
	n.Do(t, func() { ln, err = net.Listen(network, addr) })
	if err != nil {
		t.Fatalf("in %s: listen %s %s: %v", n.Name, network, addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// ListenPacket opens a packet socket inside the namespace (see net.ListenPacket).
func (n *NS) ListenPacket(t testing.TB, network, addr string) net.PacketConn {
	t.Helper()
	var pc net.PacketConn
	var err error
	n.Do(t, func() { pc, err = net.ListenPacket(network, addr) })
	if err != nil {
		t.Fatalf("in %s: listen %s %s: %v", n.Name, network, addr, err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

// Dial connects from inside the namespace with a 10 s timeout. It returns the
// error instead of failing, since tests often expect a dial to fail. The caller
// closes the connection.
func (n *NS) Dial(t testing.TB, network, addr string) (net.Conn, error) {
	t.Helper()
	var c net.Conn
	var err error
	n.Do(t, func() { c, err = net.DialTimeout(network, addr, dialTimeout) })
	return c, err
}

// Connect is Dial without a test, safe on any goroutine: for a load a
// test runs in the background.
func (n *NS) Connect(network, addr string) (net.Conn, error) {
	var c net.Conn
	var dialErr, leaveErr error
	err := n.do(func() { c, dialErr = net.DialTimeout(network, addr, dialTimeout) }, func(e error) { leaveErr = e })
	err = errors.Join(err, dialErr, leaveErr)
	if err != nil && c != nil {
		c.Close()
		c = nil
	}
	return c, err
}

// destroy kills what runs in the namespace and deletes it.
func (n *NS) destroy(t testing.TB) {
	n.mu.Lock()
	procs := n.procs
	n.mu.Unlock()
	for _, p := range procs {
		p.kill(t)
	}
	n.killStragglers(t)
	if out, err := ipCmd("netns", "del", n.Name).CombinedOutput(); err != nil {
		t.Errorf("ip netns del %s: %v\n%s", n.Name, err, out)
	}
}

// killStragglers SIGKILLs, by PID, every process still in the namespace that
// Start did not track: children of tracked processes (sshd's per-connection
// sshd-session survives its listener) and commands started with Cmd. The
// namespace is this test's own, so everything in it was started by the test.
func (n *NS) killStragglers(t testing.TB) {
	for range 50 {
		pids := n.pids(t)
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("netns %s: processes %v survive SIGKILL", n.Name, n.pids(t))
}

// pids lists the processes whose network namespace is n, except this one
// (a thread of this process may sit in n inside Do).
func (n *NS) pids(t testing.TB) []int {
	out, err := ipCmd("netns", "pids", n.Name).Output()
	if err != nil {
		t.Errorf("ip netns pids %s: %v", n.Name, err)
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err == nil && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Leftovers lists the namespaces this process created and has not deleted.
// Call it after m.Run in TestMain to prove a package leaves no trace.
func Leftovers() ([]string, error) {
	ents, err := os.ReadDir("/run/netns")
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var left []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), Prefix()) {
			left = append(left, e.Name())
		}
	}
	return left, nil
}

// ipCmd returns an ip(8) command for the quick namespace chores that cannot
// hang (add, del, pids); anything that may block goes through NS.run.
func ipCmd(args ...string) *exec.Cmd { return exec.Command("ip", args...) }

// SweepDead deletes the namespaces of test processes that died without
// their cleanup (a timeout's panic, a SIGKILL), after killing by PID what
// still runs in them: their names carry the dead process's PID.
func SweepDead() {
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		var pid, n int
		if _, err := fmt.Sscanf(e.Name(), "sshvpn-%d-%d", &pid, &n); err != nil || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == nil {
			continue // its owner runs
		}
		out, _ := ipCmd("netns", "pids", e.Name()).Output()
		for _, f := range strings.Fields(string(out)) {
			if p, err := strconv.Atoi(f); err == nil {
				syscall.Kill(p, syscall.SIGKILL)
			}
		}
		ipCmd("netns", "del", e.Name()).Run()
	}
}
