package nstest

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
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
