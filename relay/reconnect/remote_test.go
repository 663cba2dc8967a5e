package reconnect

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/relaytest"
)

// One reader on the remote sees the sessions' channels in turn: packets
// from the first, nothing while none is attached, then the second's.
func TestRemoteSwapsSessions(t *testing.T) {
	r := newRemote(1500)
	bufs, sizes := [][]byte{make([]byte, 2000)}, []int{0}
	read := make(chan []byte)
	go func() {
		defer close(read)
		for {
			n, err := r.Read(bufs, sizes, relay.Headroom)
			if err != nil {
				return
			}
			for i := range n {
				read <- append([]byte(nil), bufs[i][relay.Headroom:relay.Headroom+sizes[i]]...)
			}
		}
	}()

	// Down: writes are dropped one by one, counted as no-tunnel.
	pkt := append(make([]byte, relay.Headroom), relaytest.IPv4("x")...)
	if n, err := r.Write([][]byte{pkt}, relay.Headroom); n != 0 || !isNoTunnel(err) {
		t.Fatalf("Write with no session = %d, %v; want a no-tunnel drop", n, err)
	}

	first := relaytest.New(1500, 8)
	a := r.attach(first)
	first.Inject(relaytest.IPv4("one"))
	expectPacket(t, read, "one")
	if n, err := r.Write([][]byte{pkt}, relay.Headroom); n != 1 || err != nil {
		t.Fatalf("Write to the first session = %d, %v", n, err)
	}
	first.InjectError(io.EOF) // the server closed the channel
	select {
	case <-a.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the session did not end when its channel did")
	}
	if !errors.Is(a.err, io.EOF) {
		t.Errorf("the session ended with %v, want the channel's EOF", a.err)
	}
	select {
	case <-first.Closed():
	default:
		t.Error("the ended session's channel was not closed")
	}

	second := relaytest.New(1500, 8)
	b := r.attach(second)
	second.Inject(relaytest.IPv4("two"))
	expectPacket(t, read, "two")
	r.detach(b, errors.New("session ended"))
	if n, err := r.Write([][]byte{pkt}, relay.Headroom); n != 0 || !isNoTunnel(err) {
		t.Fatalf("Write after detach = %d, %v; want a no-tunnel drop", n, err)
	}

	r.Close()
	select {
	case _, ok := <-read:
		if ok {
			t.Fatal("a packet after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake the waiting Read")
	}
	if _, err := r.Write([][]byte{pkt}, relay.Headroom); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close = %v, want net.ErrClosed", err)
	}
	if c := r.attach(relaytest.New(1500, 8)); !errors.Is(c.err, net.ErrClosed) {
		t.Errorf("attach after Close: %v, want an attachment ended at once", c.err)
	}
}

func isNoTunnel(err error) bool {
	de, ok := errors.AsType[*relay.DropError](err)
	return ok && de.Reason == relay.DropNoTunnel
}

func expectPacket(t *testing.T, read <-chan []byte, payload string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	select {
	case p := <-read:
		if string(p[20:]) != payload {
			t.Fatalf("read %q, want %q", p[20:], payload)
		}
	case <-ctx.Done():
		t.Fatalf("no packet %q", payload)
	}
}
