package proxy

import (
	"context"
	"io"
	"net"
	"slices"
	"testing"
	"time"
)

func TestForward(t *testing.T) {
	d := &recordingDialer{to: echoServer(t)}
	f := &Forward{Dial: d.Dial, Host: "internal.example.invalid", Port: 5432}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := numGoroutines()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Serve(ctx, ln) }()

	c := dialRaw(t, ln.Addr().String())
	roundTrip(t, c, "through -L")
	if got := d.seen(); !slices.Equal(got, []string{"internal.example.invalid:5432"}) {
		t.Fatalf("Dial saw %q", got)
	}
	// A flow still open when Serve ends is closed by it.
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("open flow after Serve returned: %v, want EOF", err)
	}
	waitGoroutines(t, base)
	if st := f.Stats().Snapshot(); st.Accepted != 1 || st.BytesOut != uint64(len("through -L")) || st.Active != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestForwardDialFailure(t *testing.T) {
	d := &recordingDialer{err: ErrRefused}
	f := &Forward{Dial: d.Dial, Host: "h", Port: 1}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	c := dialRaw(t, ln.Addr().String())
	if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
		t.Fatalf("read %q, %v; want the connection closed", b, err)
	}
	if st := f.Stats().Snapshot(); st.DialFailures["refused"] != 1 {
		t.Fatalf("dial failures %v", st.DialFailures)
	}
}
