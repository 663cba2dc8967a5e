package nstest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMain proves the package leaves no namespace behind, whatever the tests did.
func TestMain(m *testing.M) {
	code := m.Run()
	if left, err := Leftovers(); err != nil || len(left) > 0 {
		fmt.Fprintf(os.Stderr, "nstest left namespaces behind: %v (err %v)\n", left, err)
		code = 1
	}
	os.Exit(code)
}

var (
	addrA4 = netip.MustParsePrefix("198.18.0.1/24")
	addrB4 = netip.MustParsePrefix("198.18.0.2/24")
	addrA6 = netip.MustParsePrefix("2001:2::1/64")
	addrB6 = netip.MustParsePrefix("2001:2::2/64")
)

// pair makes two namespaces joined by one veth carrying both families.
func pair(t *testing.T) (a, b *NS) {
	t.Helper()
	RequireRoot(t)
	RequireTool(t, "ip")
	a, b = New(t), New(t)
	aDev, bDev := Link(t, a, addrA4, b, addrB4)
	a.addAddr(t, aDev, addrA6)
	b.addAddr(t, bDev, addrB6)
	return a, b
}

func TestPing(t *testing.T) {
	RequireTool(t, "ping")
	a, b := pair(t)
	for _, tc := range []struct {
		from *NS
		to   netip.Prefix
	}{{a, addrB4}, {b, addrA4}, {a, addrB6}, {b, addrA6}} {
		Ping(t, tc.from, tc.to.Addr().String(), 3)
	}
	if CanPing(a, "198.18.0.99") {
		t.Error("CanPing(198.18.0.99) = true for an address nobody holds")
	}
}

func TestTransfer(t *testing.T) {
	a, b := pair(t)
	const size = 20 << 20
	for _, tc := range []struct {
		name       string
		listen     string
		dial       string
		isDownload bool
	}{
		{"v4/download", "198.18.0.1:0", "198.18.0.1", true},
		{"v4/upload", "198.18.0.1:0", "198.18.0.1", false},
		{"v6/download", "[2001:2::1]:0", "2001:2::1", true},
		{"v6/upload", "[2001:2::1]:5001", "[2001:2::1]:5001", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Transfer(t, a, tc.listen, b, tc.dial, size, tc.isDownload)
			if r.Bytes != size {
				t.Errorf("Result.Bytes = %d, want %d", r.Bytes, size)
			}
			t.Log(r)
		})
	}
}

// TestTransferProgress proves Reached and Received follow the receiver.
func TestTransferProgress(t *testing.T) {
	a, b := pair(t)
	const size = 20 << 20
	tr := StartTransfer(t, a, "198.18.0.1:0", b, "198.18.0.1", size, true)
	<-tr.Reached(size / 2)
	if got := tr.Received(); got < size/2 {
		t.Errorf("Reached(%d) fired with Received() = %d", size/2, got)
	}
	beyond := tr.Reached(size + 1) // never reached: closes when the transfer ends
	r, err := tr.Wait()
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-beyond:
	default:
		t.Error("Reached(size+1) still open after Wait")
	}
	if r.Bytes != size || tr.Received() != size || tr.Sent() != size || !tr.Finished() {
		t.Errorf("after Wait: Result.Bytes %d, Received %d, Sent %d, Finished %v; want %d, %d, %d, true",
			r.Bytes, tr.Received(), tr.Sent(), tr.Finished(), size, size, size)
	}
}

// fault is what faultyProxy does to the stream.
type fault int

const (
	corrupt  fault = iota // flip one bit of the byte at the offset
	truncate              // close both connections at the offset
	stall                 // forward nothing more from the offset on
)

// faultyProxy relays connections to listen in n on to upstream, doing f at
// offset at of each direction's stream. It stops, closing everything, when
// the test ends.
func faultyProxy(t *testing.T, n *NS, listen, upstream string, f fault, at int64) {
	t.Helper()
	ln := n.Listen(t, "tcp", listen)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			track(c)
			up, err := n.Connect("tcp", upstream)
			if err != nil {
				c.Close() // the transfer fails, which is what the test expects anyway
				continue
			}
			track(up)
			wg.Add(2)
			go func() { defer wg.Done(); relayFaulty(up, c, f, at) }()
			go func() { defer wg.Done(); relayFaulty(c, up, f, at) }()
		}
	}()
}

func relayFaulty(dst, src net.Conn, f fault, at int64) {
	buf := make([]byte, 32<<10)
	var off int64
	for {
		n, err := src.Read(buf)
		b := buf[:n]
		if end := off + int64(n); end > at && f != corrupt {
			dst.Write(b[:at-off])
			if f == truncate {
				src.Close()
				dst.Close()
			}
			return // stall: the cleanup closes both
		}
		if f == corrupt && off <= at && at < off+int64(n) {
			b[at-off] ^= 0x40
		}
		off += int64(n)
		if _, werr := dst.Write(b); werr != nil {
			src.Close()
			return
		}
		if err == io.EOF {
			dst.(*net.TCPConn).CloseWrite()
			return
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

// TestTransferFails proves a broken transfer fails promptly with the reason,
// through Wait, on the caller's goroutine: corrupt data (at the right
// offset), a connection cut short, a stall (after transferIdle, not the
// whole timeout), and a test that ends first (the cleanup aborts the
// transfer).
func TestTransferFails(t *testing.T) {
	a, b := pair(t)
	const size = 50 << 20
	saved := transferIdle
	transferIdle = 2 * time.Second
	t.Cleanup(func() { transferIdle = saved })
	const bound = 15 * time.Second // far below transferTimeout(size)
	port := 5100
	// run transfers through a faulty proxy and returns Wait's error and how
	// long it took.
	run := func(t *testing.T, f fault, at int64, download bool) (*TransferRun, time.Duration, error) {
		t.Helper()
		port += 2
		listen, proxy := fmt.Sprintf("198.18.0.1:%d", port), fmt.Sprintf("198.18.0.1:%d", port+1)
		faultyProxy(t, a, proxy, listen, f, at)
		start := time.Now()
		tr := StartTransfer(t, a, listen, b, proxy, size, download)
		_, err := tr.Wait()
		return tr, time.Since(start), err
	}
	for _, download := range []bool{true, false} {
		t.Run(fmt.Sprintf("corrupt/download=%v", download), func(t *testing.T) {
			const at = 5<<20 + 77
			_, d, err := run(t, corrupt, at, download)
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("differs from the sent stream at offset %d", at)) {
				t.Fatalf("Wait = %v, want a mismatch at offset %d", err, at)
			}
			if d > bound {
				t.Errorf("took %v, want under %v", d, bound)
			}
			t.Log(err)
		})
		t.Run(fmt.Sprintf("truncate/download=%v", download), func(t *testing.T) {
			const at = 3 << 20
			tr, d, err := run(t, truncate, at, download)
			if err == nil {
				t.Fatal("Wait = nil for a connection cut short")
			}
			if got := tr.Received(); got > at {
				t.Errorf("Received() = %d, more than the %d bytes the proxy let through", got, at)
			}
			if d > bound {
				t.Errorf("took %v, want under %v", d, bound)
			}
			t.Log(err)
		})
		t.Run(fmt.Sprintf("stall/download=%v", download), func(t *testing.T) {
			const at = 1 << 20
			_, d, err := run(t, stall, at, download)
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("Wait = %v, want a deadline exceeded", err)
			}
			if d < transferIdle || d > bound {
				t.Errorf("took %v, want between transferIdle (%v) and %v", d, transferIdle, bound)
			}
			t.Log(err)
		})
	}
	var tr *TransferRun
	var ended time.Time
	t.Run("test-ends-first", func(t *testing.T) {
		port += 2
		listen, proxy := fmt.Sprintf("198.18.0.1:%d", port), fmt.Sprintf("198.18.0.1:%d", port+1)
		faultyProxy(t, a, proxy, listen, stall, 1<<20)
		tr = StartTransfer(t, a, listen, b, proxy, size, true)
		<-tr.Reached(1 << 20)
		ended = time.Now()
		// Returning now is what a t.Fatal elsewhere in the test does.
	})
	if !tr.Finished() {
		t.Fatal("the transfer still runs after its test's cleanup")
	}
	if d := time.Since(ended); d > time.Second {
		t.Errorf("the cleanup took %v to abort the transfer", d)
	}
	if _, err := tr.Wait(); !errors.Is(err, errAborted) {
		t.Errorf("Wait after the test ended = %v, want %v", err, errAborted)
	}
}

// TestDo proves sockets made in Do belong to the namespace: a loopback
// listener in a is invisible from b.
func TestDo(t *testing.T) {
	a, b := pair(t)
	ln := a.Listen(t, "tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	c, err := a.Dial(t, "tcp", addr)
	if err != nil {
		t.Fatalf("dial %s inside its own namespace: %v", addr, err)
	}
	c.Close()
	if c, err := b.Dial(t, "tcp", addr); err == nil {
		c.Close()
		t.Fatalf("dial %s from another namespace succeeded", addr)
	}
}

// TestCleanup proves processes and namespaces disappear when a test ends:
// a tracked process, an untracked grandchild, and the namespace itself.
func TestCleanup(t *testing.T) {
	RequireRoot(t)
	RequireTool(t, "sleep")
	var name string
	var tracked, straggler int
	t.Run("inner", func(t *testing.T) {
		n := New(t)
		name = n.Name
		p := n.Start(t, "sh", "-c", "sleep 600 & echo $!; exec sleep 600")
		tracked = p.PID()
		WaitFor(t, 5*time.Second, "the background sleep's PID", func() bool { return p.Log() != "" })
		fmt.Sscan(p.Log(), &straggler)
		if err := p.Wait(50 * time.Millisecond); !errors.Is(err, ErrWaitTimeout) {
			t.Errorf("Wait on a sleeping process = %v, want ErrWaitTimeout", err)
		}
	})
	for _, pid := range []int{tracked, straggler} {
		if pid == 0 {
			t.Fatal("no PID recorded")
		}
		// The straggler is reparented to init, which reaps it in its own time.
		WaitFor(t, 5*time.Second, fmt.Sprintf("pid %d to be gone", pid), func() bool { return dead(pid) })
	}
	if _, err := os.Stat("/run/netns/" + name); !os.IsNotExist(err) {
		t.Errorf("namespace %s still exists after cleanup (%v)", name, err)
	}
	if left, _ := Leftovers(); len(left) > 0 {
		t.Errorf("Leftovers() = %v after every namespace's test ended", left)
	}
}

func TestProcExit(t *testing.T) {
	RequireRoot(t)
	n := New(t)
	p := n.Start(t, "sh", "-c", "echo hello; exit 3")
	var ee *exec.ExitError
	if err := p.Wait(10 * time.Second); !errors.As(err, &ee) || p.ExitCode() != 3 {
		t.Fatalf("Wait = %v, ExitCode = %d, want exit status 3", err, p.ExitCode())
	}
	if got := p.Log(); got != "hello\n" {
		t.Errorf("Log() = %q, want %q", got, "hello\n")
	}
}

// sshPair starts o's sshd in a, with PermitTunnel permit and a fresh client key,
// and returns the key and the server.
func sshPair(t *testing.T, o OpenSSH, a *NS, permit string) (key string, s *SSHD) {
	t.Helper()
	key, pub := o.Keygen(t, t.TempDir(), "id_ed25519")
	s = o.StartSSHD(t, a, SSHDConfig{
		ListenAddr:     addrA4.Addr().String() + ":22",
		PermitTunnel:   permit,
		AuthorizedKeys: pub + "\n",
	})
	return key, s
}

// TestOpenSSH proves each OpenSSH generation runs as a peer: version, sshd
// config (sshd-session for 10.0), key authentication, strict host key checking.
func TestOpenSSH(t *testing.T) {
	a, b := pair(t)
	for _, o := range OpenSSHs(t) {
		t.Run(o.Version, func(t *testing.T) {
			out, _ := exec.Command(o.SSH, "-V").CombinedOutput()
			if !strings.Contains(string(out), "OpenSSH_"+o.Version) {
				t.Errorf("%s -V = %q, want OpenSSH_%s", o.SSH, out, o.Version)
			}
			key, s := sshPair(t, o, a, "yes")
			for _, known := range []string{"", s.KnownHosts} {
				args := o.ClientArgs(t, key, known, "root@"+s.Addr.Addr().String(), "echo", "ok")
				// stdout only: at LogLevel=INFO, ssh warns on stderr when it
				// accepts an unknown host key.
				out, err := b.Cmd(args...).Output()
				if got := strings.TrimSpace(string(out)); err != nil || got != "ok" {
					t.Errorf("ssh (known_hosts %q) printed %q, %v; want ok", known, got, err)
				}
			}
		})
	}
}

// TestOpenSSHTunnel proves the peers carry a point-to-point tunnel (ssh -w)
// between namespaces, the setup sshvpn's interop tests build on.
func TestOpenSSHTunnel(t *testing.T) {
	RequireTool(t, "ping")
	a, b := pair(t)
	for _, o := range OpenSSHs(t) {
		t.Run(o.Version, func(t *testing.T) {
			key, s := sshPair(t, o, a, "point-to-point")
			args := o.ClientArgs(t, key, s.KnownHosts,
				"-o", "Tunnel=point-to-point", "-o", "ExitOnForwardFailure=yes",
				"-w", "7:9", "-N", "root@"+s.Addr.Addr().String())
			c := b.Start(t, args...)
			WaitFor(t, 10*time.Second, "tun9 in the server namespace", func() bool {
				if c.Exited() {
					t.Fatalf("ssh -w exited: %v\n%s", c.Wait(0), c.Log())
				}
				_, err := a.run("ip", "link", "show", "tun9")
				return err == nil
			})
			a.Run(t, "ip", "addr", "add", "198.19.7.1", "peer", "198.19.7.2", "dev", "tun9")
			a.Run(t, "ip", "link", "set", "tun9", "up")
			b.Run(t, "ip", "addr", "add", "198.19.7.2", "peer", "198.19.7.1", "dev", "tun7")
			b.Run(t, "ip", "link", "set", "tun7", "up")
			Ping(t, b, "198.19.7.1", 3)
			Ping(t, a, "198.19.7.2", 3)
		})
	}
}

// dead reports whether pid no longer runs: gone, or a zombie awaiting its reaper.
func dead(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the parenthesised command name: "pid (comm) S ...".
	_, rest, _ := strings.Cut(string(b), ") ")
	return strings.HasPrefix(rest, "Z")
}

// TestOpenSSHTunnelRefused pins what a stock client shows when sshd refuses a
// tunnel: only the reason and text of the open failure reach stderr at the
// default LogLevel (sshd's "why", "Server has rejected tunnel device
// forwarding", comes as SSH_MSG_DEBUG, shown only with -v as "debug1: Remote:
// ..."), and with ExitOnForwardFailure the client exits 255 (without it, -N
// keeps running). sshvpn's own refusals
// must read well in that same line.
func TestOpenSSHTunnelRefused(t *testing.T) {
	a, b := pair(t)
	for _, o := range OpenSSHs(t) {
		t.Run(o.Version, func(t *testing.T) {
			key, s := sshPair(t, o, a, "no")
			c := b.Start(t, o.ClientArgs(t, key, s.KnownHosts,
				"-o", "Tunnel=point-to-point", "-o", "ExitOnForwardFailure=yes",
				"-w", "0:any", "-N", "root@"+s.Addr.Addr().String())...)
			c.Wait(15 * time.Second)
			// ssh ends its stderr log lines with CRLF, also without a tty.
			want := "channel 0: open failed: connect failed: open failed\r\nTunnel forwarding failed\r\n"
			if c.ExitCode() != 255 || c.Log() != want {
				t.Errorf("ssh -w against PermitTunnel no: exit %d, stderr %q; want 255, %q", c.ExitCode(), c.Log(), want)
			}
		})
	}
}
