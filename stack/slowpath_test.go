package stack

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/relay"
)

// slowLink carries the tunnel's packets to the peer as a long, narrow SSH
// path does: it takes them from the tunnel at rate, which is where the
// stack's outbound queue fills, and delivers each delay later. Its rate
// holds on average over each second, so after a pause it takes up to a
// second's worth at once, then nothing until the average is back: an SSH
// channel too drains in bursts, as the peer's window adjusts arrive. That
// burst lets a slow start run far past the path's rate before the queue
// overflows; with a strict per-packet rate the overflows were too small
// to show the stall (gVisor recovered from them with RACK on too).
type slowLink struct {
	rate  float64 // bytes per second
	delay time.Duration
}

func (l *slowLink) run(read readFunc, write writeFunc) {
	type timed struct {
		pkt []byte
		due time.Time
	}
	wire := make(chan timed, 1<<16)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for p := range wire {
			time.Sleep(time.Until(p.due))
			if _, err := write([][]byte{p.pkt}, relay.Headroom); err != nil {
				for range wire {
				}
				return
			}
		}
	}()
	defer wg.Wait()
	defer close(wire)
	bufs := make([][]byte, batchSize)
	sizes := make([]int, batchSize)
	for i := range bufs {
		bufs[i] = make([]byte, relay.Headroom+65535)
	}
	start, sent := time.Now(), 0.0
	for {
		n, err := read(bufs, sizes, relay.Headroom)
		if err != nil {
			return
		}
		for i := range n {
			sent += float64(sizes[i])
			out := time.Now()
			if due := start.Add(time.Duration(sent / l.rate * float64(time.Second))); due.After(out) {
				time.Sleep(time.Until(due))
				out = due
			}
			pkt := append([]byte(nil), bufs[i][:relay.Headroom+sizes[i]]...)
			wire <- timed{pkt, out.Add(l.delay)}
		}
		if time.Since(start) > time.Second { // the average restarts every second
			start, sent = time.Now(), 0
		}
	}
}

// TestSlowPathDownload: a download through the stack over a path slower
// than the host's network fills the client's outbound queue at every slow
// start, and must not stall. With RACK on, gVisor's TCP fell into a cycle
// of retransmission timeouts with ssthresh at 2 segments after the burst
// of drops that ends such a slow start (tuneTCP). Not a speed check: a
// transfer that takes five times what the link needs, or longer, has
// stalled.
func TestSlowPathDownload(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 16 MiB through two gVisor stacks over a 20 Mbit/s link")
	}
	const (
		size      = 4 << 20
		transfers = 4
		rate      = 20e6 / 8 // bytes per second
	)
	data := bytes.Repeat([]byte("sshvpn slow path"), size/16)
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Skipf("no tcp4 loopback here: %v", err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { c.Write(data); c.Close() }()
		}
	}()
	port := uint16(l.Addr().(*net.TCPAddr).Port)

	// A queue the peer's receive window can overflow (gVisor's 1 MiB
	// default here; a Linux client's grows to 6 MiB and overflows the
	// default 5,000 packets), and tail drop alone: on a slow CI host
	// CoDel's single early drops ended every slow start before it
	// overflowed the queue (2 CoDel drops, no overflow), and without a
	// burst of losses there is no case to guard. The link is slow enough
	// (20 Mbit/s; at 50 the race-built stack under CI's parallel tests
	// sent no faster than the link) and the queue short enough (200) for
	// a starved sender to overflow it too.
	g := newGatewayWith(t, Config{QueueLen: 200}, "127.0.0.1/tcp")
	tun := open(t, g, "SHA256:slow")
	tun.(*tunnel).SetPathRTT(40 * time.Millisecond)
	tun.(*tunnel).ep.tailDropOnly = true
	p := newPeerOver(t, tun, &slowLink{rate: rate, delay: 40 * time.Millisecond})
	stalled := 5 * time.Duration(size/rate*float64(time.Second))
	if raceEnabled() {
		stalled *= 2 // gVisor under the race detector on a busy 2-core CI machine
	}
	for i := range transfers {
		c, err := p.dialTCP(t, netip.AddrPortFrom(gw4, port))
		if err != nil {
			t.Fatalf("transfer %d: dial through the stack: %v", i, err)
		}
		start := time.Now()
		c.SetReadDeadline(start.Add(stalled))
		got, err := io.ReadAll(c)
		took := time.Since(start)
		c.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("transfer %d: %d of %d bytes in %v (stalled after %v), equal prefix %v: %v",
				i, len(got), len(data), took.Round(time.Millisecond), stalled, bytes.HasPrefix(data, got), err)
		}
		t.Logf("transfer %d: %.1f Mbit/s", i, float64(len(got))*8/took.Seconds()/1e6)
	}
	st := tun.(*tunnel).s.Stats().TCP
	drops := tun.(*tunnel).Stats()
	t.Logf("retransmits %d, timeouts %d, queue drops: full %d, delay %d", st.Retransmits.Value(), st.Timeouts.Value(),
		drops.DropsQueueFull.Load(), drops.DropsQueueDelay.Load())
	if drops.DropsQueueFull.Load() == 0 {
		t.Error("no slow start overflowed the queue: the test no longer builds the case it guards")
	}
}
