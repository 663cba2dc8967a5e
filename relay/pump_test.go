package relay_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/relaytest"
)

// packet returns an n-byte IPv4-looking packet whose bytes encode seq.
func packet(seq, n int) []byte {
	p := make([]byte, n)
	p[0] = 0x45
	for i := 1; i < n; i++ {
		p[i] = byte(seq + i)
	}
	return p
}

// pumpRun is one running Pump between two fake devices.
type pumpRun struct {
	a, b       *relaytest.Dev
	aToB, bToA relay.Counters
	cancel     context.CancelFunc
	done       chan error
}

// startPump runs a Pump until the test ends and checks that Run returned and
// closed both devices without leaving goroutines behind.
func startPump(t *testing.T, a, b *relaytest.Dev) *pumpRun {
	t.Helper()
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	r := &pumpRun{a: a, b: b, cancel: cancel, done: make(chan error, 1)}
	p := relay.NewPump(a, b, &r.aToB, &r.bToA, nil)
	go func() { r.done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		r.wait(t)
		for _, d := range []*relaytest.Dev{a, b} {
			select {
			case <-d.Closed():
			default:
				t.Error("Run returned without closing a device")
			}
		}
		checkGoroutines(t, before)
	})
	return r
}

// stop ends Run and waits for it.
func (r *pumpRun) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	if err := r.wait(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// wait returns Run's result, once; later calls return the same.
func (r *pumpRun) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}

// checkGoroutines waits for the goroutine count to fall back to before.
func checkGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Errorf("%d goroutines left over, %d before", runtime.NumGoroutine(), before)
			return
		}
		time.Sleep(time.Millisecond)
	}
}

func recv(t *testing.T, d *relaytest.Dev) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := d.Recv(ctx)
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	return p
}

func TestPumpBothWays(t *testing.T) {
	r := startPump(t, relaytest.New(1500, 8), relaytest.New(9000, 3))
	const n = 500
	var wg sync.WaitGroup
	var sizes [2]int
	for dir, pair := range [][2]*relaytest.Dev{{r.a, r.b}, {r.b, r.a}} {
		wg.Go(func() {
			for i := range n {
				size := 20 + (i*37+dir*11)%1480
				sizes[dir] += size
				if err := pair[0].Inject(packet(i+dir, size)); err != nil {
					t.Error(err)
					return
				}
			}
		})
		wg.Go(func() {
			for i := range n {
				want := packet(i+dir, 20+(i*37+dir*11)%1480)
				if got := recv(t, pair[1]); !bytes.Equal(got, want) {
					t.Errorf("direction %d packet %d: got %d bytes %x…, want %d bytes", dir, i, len(got), got[:4], len(want))
					return
				}
			}
		})
	}
	wg.Wait()
	// A packet is counted after Write returns, which may be after the
	// receiver saw it: read the counters once the Pump has stopped.
	r.stop(t)
	for dir, c := range []*relay.Counters{&r.aToB, &r.bToA} {
		s := c.Snapshot()
		if s.Packets != n || s.Bytes != uint64(sizes[dir]) || s.Dropped() != 0 {
			t.Errorf("direction %d counters %+v, want %d packets, %d bytes", dir, s, n, sizes[dir])
		}
	}
}

func TestPumpCountsDrops(t *testing.T) {
	a, b := relaytest.New(1500, 16), relaytest.New(1500, 4)
	var mu sync.Mutex
	var got [][]byte
	delivered := make(chan struct{}, 100)
	b.OnWrite(func(pkt []byte) error {
		switch pkt[1] {
		case 0xee:
			return &relay.DropError{Reason: relay.DropOversized}
		case 0xfa:
			return &relay.DropError{Reason: relay.DropFamily, Err: errors.New("not IP")}
		}
		mu.Lock()
		got = append(got, bytes.Clone(pkt))
		mu.Unlock()
		delivered <- struct{}{}
		return nil
	})
	r := startPump(t, a, b)
	marks := []byte{1, 0xee, 2, 0xee, 0xfa, 3, 4, 0xfa, 5}
	for _, m := range marks {
		pkt := packet(0, 100)
		pkt[1] = m
		if err := a.Inject(pkt); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		<-delivered
	}
	r.stop(t) // the counters are final once Run returned
	mu.Lock()
	defer mu.Unlock()
	for i, p := range got {
		if p[1] != byte(i+1) {
			t.Errorf("delivered packet %d has mark %d, want %d", i, p[1], i+1)
		}
	}
	s := r.aToB.Snapshot()
	want := map[string]uint64{"oversized": 2, "family": 2}
	if s.Packets != 5 || s.Bytes != 500 || len(s.Drops) != 2 || s.Drops["oversized"] != 2 || s.Drops["family"] != 2 {
		t.Errorf("counters %+v, want 5 packets, 500 bytes, drops %v", s, want)
	}
}

func TestPumpStops(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name string
		stop func(r *pumpRun)
		want error
	}{
		{"context", func(r *pumpRun) { r.cancel() }, nil},
		{"eof from a", func(r *pumpRun) { r.a.InjectError(io.EOF) }, nil},
		{"eof from b", func(r *pumpRun) { r.b.InjectError(io.EOF) }, nil},
		{"a closed by its owner", func(r *pumpRun) { r.a.Close() }, nil},
		{"read error", func(r *pumpRun) { r.b.InjectError(boom) }, boom},
		{"write error", func(r *pumpRun) {
			r.b.OnWrite(func([]byte) error { return boom })
			r.a.Inject(packet(1, 60))
		}, boom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startPump(t, relaytest.New(1500, 8), relaytest.New(1500, 8))
			r.a.Inject(packet(0, 40)) // traffic first, so the stop finds Run busy
			recv(t, r.b)
			tt.stop(r)
			err := r.wait(t)
			if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
				t.Fatalf("Run = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestPumpAllocs proves the steady state allocates nothing: the fakes hand
// packets over without copies, so every allocation would be the Pump's.
func TestPumpAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("measures allocations over many batches")
	}
	const batch = 8
	a, b := relaytest.New(1500, batch), relaytest.New(1500, batch)
	written := make(chan struct{}, batch)
	b.OnWrite(func([]byte) error { written <- struct{}{}; return nil })
	startPump(t, a, b)
	pkt := packet(0, 1400)
	allocs := testing.AllocsPerRun(200, func() {
		for range batch {
			a.Inject(pkt)
		}
		for range batch {
			<-written
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per batch of %d packets, want 0", allocs, batch)
	}
}

func BenchmarkPump(b *testing.B) {
	const batch, size = 64, 1400
	src, dst := relaytest.New(1500, batch), relaytest.New(1500, batch)
	written := make(chan struct{}, relaytest.QueueLen)
	dst.OnWrite(func([]byte) error { written <- struct{}{}; return nil })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- relay.NewPump(src, dst, nil, nil, nil).Run(ctx) }()
	defer func() { cancel(); <-done }()
	pkt := packet(0, size)
	b.SetBytes(size * batch)
	b.ReportAllocs()
	for b.Loop() {
		for range batch {
			src.Inject(pkt)
		}
		for range batch {
			<-written
		}
	}
}
