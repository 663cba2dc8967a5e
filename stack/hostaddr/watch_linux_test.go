package hostaddr

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// latest keeps the last Update, for polling.
type latest struct {
	mu    sync.Mutex
	addrs []netip.Prefix
}

func (l *latest) set(p []netip.Prefix) {
	l.mu.Lock()
	l.addrs = p
	l.mu.Unlock()
}

func (l *latest) has(p string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Contains(l.addrs, netip.MustParsePrefix(p))
}

// noReports is the kernel's source with its reports refused, as where
// netlink subscriptions fail.
type noReports struct{ source }

func (noReports) subscribe() (changes, error) { return nil, errors.New("refused by the test") }

// TestWatchNamespace follows a real namespace's addresses, from another
// thread than the one Watch ran on, with the kernel's reports and without:
// ip addr add and del, on lo and on a new interface, IPv4 and IPv6.
func TestWatchNamespace(t *testing.T) {
	for _, reports := range []bool{true, false} {
		name := "reports"
		if !reports {
			name = "polling"
		}
		t.Run(name, func(t *testing.T) {
			ns := nstest.New(t)
			var got latest
			var w *Watcher
			ns.Do(t, func() {
				src, err := openSource()
				if err != nil {
					t.Fatal(err)
				}
				// With reports, a listing at intervals must not be
				// what finds the changes.
				poll := time.Hour
				if !reports {
					src, poll = noReports{src}, 20*time.Millisecond
				}
				w, err = watch(Config{Update: got.set, PollInterval: poll}, src)
				if err != nil {
					t.Fatal(err)
				}
			})
			defer w.Close()
			if !got.has("127.0.0.1/8") || !got.has("::1/128") {
				t.Fatal("the first listing lacks lo's addresses")
			}
			ns.Run(t, "ip", "link", "add", "ha0", "type", "veth", "peer", "name", "ha1")
			for _, c := range []struct{ dev, addr string }{
				{"lo", "198.18.77.1/32"},
				{"lo", "2001:2:0:77::1/128"},
				{"ha0", "198.18.78.1/24"},
				{"ha0", "2001:2:0:78::1/64"},
			} {
				ns.Run(t, "ip", "addr", "add", c.addr, "dev", c.dev, "nodad")
				nstest.WaitFor(t, 5*time.Second, c.addr+" on "+c.dev+" in the Watcher's set", func() bool { return got.has(c.addr) })
			}
			if got.has("198.18.78.1/32") {
				t.Error("an address lost its prefix length")
			}
			ns.Run(t, "ip", "addr", "del", "198.18.77.1/32", "dev", "lo")
			nstest.WaitFor(t, 5*time.Second, "198.18.77.1/32 gone from the Watcher's set", func() bool { return !got.has("198.18.77.1/32") })
			ns.Run(t, "ip", "link", "del", "ha0")
			nstest.WaitFor(t, 5*time.Second, "ha0's addresses gone with it", func() bool {
				return !got.has("198.18.78.1/24") && !got.has("2001:2:0:78::1/64")
			})
			if !got.has("2001:2:0:77::1/128") {
				t.Error("lo's IPv6 address left the set with another interface")
			}
		})
	}
}

// TestReportsOverflow: when more changes come than the socket's queue
// holds, the kernel drops reports and says so (ENOBUFS) once. That is one
// more report, and reports go on after it.
func TestReportsOverflow(t *testing.T) {
	ns := nstest.New(t)
	var feed changes
	ns.Do(t, func() {
		src, err := openSource()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(src.close)
		if feed, err = src.subscribe(); err != nil {
			t.Fatal(err)
		}
	})
	defer feed.stop()
	// The smallest queue the kernel allows holds a few reports.
	nc := feed.(*netlinkChanges)
	nc.raw.Control(func(fd uintptr) {
		if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 0); err != nil {
			t.Fatal(err)
		}
	})
	var batch strings.Builder
	for i := range 64 {
		fmt.Fprintf(&batch, "addr add 198.18.79.%d/32 dev lo\n", i+1)
	}
	cmd := ns.Cmd("ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip -batch: %v\n%s", err, out)
	}
	if err := feed.wait(); err != nil {
		t.Fatalf("wait after an overflow = %v, want a report", err)
	}
	next := make(chan error, 1)
	go func() { next <- feed.wait() }()
	ns.Run(t, "ip", "addr", "add", "198.18.79.200/32", "dev", "lo")
	select {
	case err := <-next:
		if err != nil {
			t.Fatalf("wait after the overflow = %v, want a report", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no report of a change after the overflow")
	}
}
