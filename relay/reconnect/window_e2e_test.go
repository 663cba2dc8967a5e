package reconnect_test

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/gateway/gatewaytest"
	"github.com/sshvpn/sshvpn/relay/reconnect"
	"github.com/sshvpn/sshvpn/relay/relaytest"
)

// On a long path the client widens its receive window of the framed
// channel to the path's round trip, as the gateway does its own: with
// x/crypto's 2 MiB a download over 30 ms could not pass 560 Mbit/s. The
// client's device here takes nothing, so what the gateway manages to send
// is the window the client granted (plus the queues in between, well under
// the widening).
func TestClientWidensItsWindowToThePath(t *testing.T) {
	g := gatewaytest.Start(t, gatewaytest.Options{})
	addr := delayProxy(t, g.Addr, 15*time.Millisecond)

	local := relaytest.New(1500, 8)
	stall := make(chan struct{})
	local.OnWrite(func([]byte) error { <-stall; return net.ErrClosed })
	ctx, cancel := context.WithCancel(context.Background())
	c := &reconnect.Client{
		Dial: func(ctx context.Context) (*ssh.Client, error) {
			return ssh.Dial("tcp", addr, g.ClientConfig("SSH-2.0-sshvpn-test"))
		},
		Mode: relay.PointToPoint, Unit: relay.AnyUnit,
		Setup: func(*relay.TunnelConfig) (relay.Device, error) { return local, nil },
		Log:   slog.New(slog.DiscardHandler),
	}
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		close(stall)
		<-done
	}()

	var dev *relaytest.Dev
	for deadline := time.Now().Add(10 * time.Second); dev == nil; time.Sleep(10 * time.Millisecond) {
		if devs := g.Devs(); len(devs) > 0 {
			dev = devs[0]
		} else if time.Now().After(deadline) {
			t.Fatal("no tunnel")
		}
	}
	pkt := relaytest.IPv4(strings.Repeat("x", 1380))
	var sent atomic.Int64
	go func() {
		for dev.Inject(pkt) == nil {
			sent.Add(int64(len(pkt)))
		}
	}()

	// x/crypto's 2 MiB window, the gateway's device queue and the
	// buffers of both channel ends hold less than 4 MiB; the path's round
	// trip asks for about 11 MiB.
	const want = 6 << 20
	last, since := int64(0), time.Now()
	for sent.Load() < want {
		if n := sent.Load(); n != last {
			last, since = n, time.Now()
		} else if time.Since(since) > 2*time.Second {
			t.Fatalf("the gateway stopped after %.1f MiB: the client kept a window too small for a 30 ms path", float64(n)/(1<<20))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// delayProxy forwards TCP connections to target, holding what it carries
// for d each way: a path with a round trip of 2d on loopback.
func delayProxy(t *testing.T, target string, d time.Duration) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, s)
			mu.Unlock()
			go delayCopy(s, c, d)
			go delayCopy(c, s, d)
		}
	}()
	return ln.Addr().String()
}

// delayCopy copies src to dst, each read d later than it arrived.
func delayCopy(dst, src net.Conn, d time.Duration) {
	type chunk struct {
		due time.Time
		b   []byte
	}
	q := make(chan chunk, 4096)
	go func() {
		defer close(q)
		for {
			b := make([]byte, 32<<10)
			n, err := src.Read(b)
			if n > 0 {
				q <- chunk{time.Now().Add(d), b[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		time.Sleep(time.Until(c.due))
		if _, err := dst.Write(c.b); err != nil {
			src.Close()
			for range q {
			}
			return
		}
	}
	dst.Close()
}
