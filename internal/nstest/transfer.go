package nstest

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Result describes one completed Transfer.
type Result struct {
	Bytes    int64         // bytes received, equal to the size asked for
	Duration time.Duration // from the dial to the receiver's end of stream
}

// BitsPerSecond returns the transfer's goodput.
func (r Result) BitsPerSecond() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.Bytes) * 8 / r.Duration.Seconds()
}

func (r Result) String() string {
	return fmt.Sprintf("%d bytes in %v (%.1f Mbit/s)", r.Bytes, r.Duration.Round(time.Millisecond), r.BitsPerSecond()/1e6)
}

// transferChunk is the size of each write and of the receiver's read buffer.
const transferChunk = 128 << 10

// transferTimeout allows a generous minute plus 1 MiB/s: a 2 GiB transfer
// through a slow, race-instrumented tunnel still fits, a stall still ends.
func transferTimeout(size int64) time.Duration {
	return time.Minute + time.Duration(size>>20)*time.Second
}

// transferIdle ends a transfer whose receiver gets nothing, or whose sender
// cannot write, for this long: a stall fails within it, not at the end of the
// whole transfer's timeout. It is generous enough for a tunnel that
// reconnects (TCP's retransmission backoff included). A variable so that
// this package's own tests can shorten it.
var transferIdle = 30 * time.Second

// acceptTimeout bounds the wait for the dialled connection to reach the
// listener (it may have reached another host's instead).
const acceptTimeout = 2 * dialTimeout

// Transfer moves size bytes over one TCP connection and proves they arrived
// byte for byte. The server side listens inside server on listenAddr (port 0
// picks one); the client side dials dialAddr from inside client. When dialAddr
// has no port, or port 0, the listener's port is used, so dialAddr may name
// another address of the same host (or one a NAT maps to it).
//
// download=true makes the server send and the client receive; false, the
// reverse. The data is a seeded ChaCha8 stream generated on the fly, so sizes
// of gigabytes cost no memory. The receiver compares it with the expected
// stream as it reads and stops at the first differing offset; both sides'
// SHA-256 sums must match. A mismatch, a short or long count, an error, 30 s
// without progress or the overall timeout (1 min + 1 s per MiB) fails the
// test.
//
// Transfer calls t.Fatal, so it must run on the test's goroutine. To run a
// transfer beside other work, use StartTransfer and Wait.
func Transfer(t testing.TB, server *NS, listenAddr string, client *NS, dialAddr string, size int64, download bool) Result {
	t.Helper()
	r, err := StartTransfer(t, server, listenAddr, client, dialAddr, size, download).Wait()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TransferRun is a transfer that StartTransfer started. Its methods may be
// called from any goroutine; none of them touches the test.
type TransferRun struct {
	size     int64
	download bool
	start    time.Time

	server, client net.Conn // closed by abort and when both sides are done

	sent, received atomic.Int64 // progress, for tests that act mid-transfer

	mu      sync.Mutex
	waiters []byteWaiter // Reached channels not yet closed
	ended   bool         // both sides are done; Reached closes at once

	abortOnce sync.Once
	aborted   atomic.Bool
	done      chan struct{} // closed once both sides have ended
	result    Result
	err       error
}

// byteWaiter is a channel to close once the receiver has n bytes.
type byteWaiter struct {
	n  int64
	ch chan struct{}
}

// StartTransfer starts what Transfer does and returns without waiting for
// the data. It listens and dials on the calling goroutine, which must be the
// test's (a failure there calls t.Fatal); the data then moves in the
// background, and Wait reports the outcome as an error, never through t. Both
// ends are bounded by the same deadlines as Transfer's. When the test ends
// first (a t.Fatal elsewhere), its cleanup aborts the transfer and waits for
// both sides, so no goroutine or socket outlives the test.
func StartTransfer(t testing.TB, server *NS, listenAddr string, client *NS, dialAddr string, size int64, download bool) *TransferRun {
	t.Helper()
	ln := server.Listen(t, "tcp", listenAddr)
	defer ln.Close()
	dialAddr = withPort(dialAddr, ln.Addr().(*net.TCPAddr).Port)
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(acceptTimeout))
	type acceptResult struct {
		c   net.Conn
		err error
	}
	accepted := make(chan acceptResult, 1)
	go func() {
		c, err := ln.Accept()
		accepted <- acceptResult{c, err}
	}()

	start := time.Now()
	cc, err := client.Dial(t, "tcp", dialAddr)
	if err != nil {
		ln.Close()
		if a := <-accepted; a.c != nil {
			a.c.Close()
		}
		t.Fatalf("transfer: dial %s from %s: %v", dialAddr, client.Name, err)
	}
	a := <-accepted
	if a.err != nil {
		cc.Close()
		t.Fatalf("transfer: accept on %s in %s (dialled %s from %s): %v", listenAddr, server.Name, dialAddr, client.Name, a.err)
	}

	tr := &TransferRun{size: size, download: download, start: start, server: a.c, client: cc, done: make(chan struct{})}
	deadline := start.Add(transferTimeout(size))
	seed := transferSeed(size)
	results := make(chan sideResult, 2)
	for _, side := range []struct {
		c    net.Conn
		send bool
	}{{a.c, download}, {cc, !download}} {
		go func() {
			r := tr.runSide(side.c, deadline, seed, size, side.send)
			r.server = side.c == a.c
			// The sender's last step waits for the receiver's close.
			side.c.Close()
			if r.err != nil {
				// The other end is ours too: end it now rather than
				// letting it wait for a deadline.
				tr.closeConns()
			}
			results <- r
		}()
	}
	go func() {
		var sr, cr sideResult
		for range 2 {
			if r := <-results; r.server {
				sr = r
			} else {
				cr = r
			}
		}
		tr.closeConns()
		tr.result, tr.err = tr.check(sr, cr, time.Since(start))
		tr.mu.Lock()
		tr.ended = true
		for _, w := range tr.waiters {
			close(w.ch)
		}
		tr.waiters = nil
		tr.mu.Unlock()
		close(tr.done)
	}()
	t.Cleanup(func() {
		select {
		case <-tr.done:
		default:
			tr.abort()
		}
	})
	return tr
}

// Wait waits for both sides to end and returns the transfer's result, or an
// error that says what went wrong (direction, size, bytes sent and received,
// the first differing offset, a timeout). It is safe to call more than once
// and from any goroutine; it returns within the transfer's deadlines.
func (tr *TransferRun) Wait() (Result, error) {
	<-tr.done
	return tr.result, tr.err
}

// Done is closed once both sides have ended; Wait then returns at once.
func (tr *TransferRun) Done() <-chan struct{} { return tr.done }

// Finished reports whether both sides have ended.
func (tr *TransferRun) Finished() bool {
	select {
	case <-tr.done:
		return true
	default:
		return false
	}
}

// Size is the number of bytes the transfer moves.
func (tr *TransferRun) Size() int64 { return tr.size }

// Sent is how many bytes the sender has written so far.
func (tr *TransferRun) Sent() int64 { return tr.sent.Load() }

// Received is how many bytes the receiver has read so far.
func (tr *TransferRun) Received() int64 { return tr.received.Load() }

// Reached returns a channel that is closed as soon as the receiver has read
// at least n bytes, or when the transfer ends (check Received to tell which).
func (tr *TransferRun) Reached(n int64) <-chan struct{} {
	ch := make(chan struct{})
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.received.Load() >= n || tr.ended {
		close(ch)
		return ch
	}
	tr.waiters = append(tr.waiters, byteWaiter{n, ch})
	return ch
}

// progress records that the receiver has read n bytes in all.
func (tr *TransferRun) progress(n int64) {
	tr.received.Store(n)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.waiters) == 0 {
		return
	}
	kept := tr.waiters[:0]
	for _, w := range tr.waiters {
		if n >= w.n {
			close(w.ch)
		} else {
			kept = append(kept, w)
		}
	}
	tr.waiters = kept
}

// abort ends both sides at once and waits for them.
func (tr *TransferRun) abort() {
	tr.aborted.Store(true)
	tr.closeConns()
	<-tr.done
}

func (tr *TransferRun) closeConns() {
	tr.abortOnce.Do(func() {
		tr.server.Close()
		tr.client.Close()
	})
}

// errAborted is a side's error when the test ended before the transfer.
var errAborted = errors.New("aborted: the test ended first")

// sideResult is what one end of a Transfer saw.
type sideResult struct {
	server   bool   // the listener's end
	n        int64  // bytes written or read
	sum      []byte // SHA-256 of those bytes
	mismatch int64  // receiver: first offset that differs from the stream, -1 if none
	err      error
}

// runSide sends when send is true, otherwise receives.
func (tr *TransferRun) runSide(c net.Conn, deadline time.Time, seed [32]byte, size int64, send bool) sideResult {
	ic := &idleConn{TCPConn: c.(*net.TCPConn), deadline: deadline}
	var r sideResult
	if send {
		r = sendStream(ic, seed, size, &tr.sent)
	} else {
		r = recvStream(ic, seed, tr.progress)
	}
	if r.err != nil && tr.aborted.Load() {
		r.err = fmt.Errorf("%w (%v)", errAborted, r.err)
	}
	return r
}

// idleConn sets a fresh deadline before each read and write: transferIdle
// from now, but never past the transfer's overall deadline.
type idleConn struct {
	*net.TCPConn
	deadline time.Time
}

func (c *idleConn) next() time.Time {
	d := time.Now().Add(transferIdle)
	if d.After(c.deadline) {
		return c.deadline
	}
	return d
}

func (c *idleConn) Read(p []byte) (int, error) {
	c.TCPConn.SetReadDeadline(c.next())
	return c.TCPConn.Read(p)
}

func (c *idleConn) Write(p []byte) (int, error) {
	c.TCPConn.SetWriteDeadline(c.next())
	return c.TCPConn.Write(p)
}

// sendStream writes size bytes of the stream, half-closes, then waits for the
// receiver to close so that its read of the end is not cut short by a reset.
// That wait is bounded by the receiver: it closes when it has all the data,
// on an error and when it stalls for transferIdle.
func sendStream(c *idleConn, seed [32]byte, size int64, sent *atomic.Int64) sideResult {
	h := sha256.New()
	src := rand.NewChaCha8(seed)
	buf := make([]byte, transferChunk)
	var n int64
	for n < size {
		b := buf[:min(int64(len(buf)), size-n)]
		src.Read(b)
		h.Write(b)
		w, err := c.Write(b)
		n += int64(w)
		sent.Store(n)
		if err != nil {
			return sideResult{n: n, err: fmt.Errorf("send after %d bytes: %w", n, err)}
		}
	}
	if err := c.CloseWrite(); err != nil {
		return sideResult{n: n, err: fmt.Errorf("send: close write: %w", err)}
	}
	c.TCPConn.SetReadDeadline(c.deadline)
	if _, err := io.Copy(io.Discard, c.TCPConn); err != nil {
		return sideResult{n: n, sum: h.Sum(nil), err: fmt.Errorf("send: waiting for the receiver to close: %w", err)}
	}
	return sideResult{n: n, sum: h.Sum(nil)}
}

// recvStream reads to end of stream, hashing and checking against the
// stream, and stops at the first byte that differs.
func recvStream(c *idleConn, seed [32]byte, progress func(int64)) sideResult {
	h := sha256.New()
	v := &verifier{src: rand.NewChaCha8(seed), h: h, mismatch: -1, progress: progress}
	buf := make([]byte, transferChunk)
	// Not io.CopyBuffer: it would hand the read to the TCPConn's own
	// WriteTo, around idleConn's deadlines.
	var err error
	for {
		n, rerr := c.Read(buf)
		if n > 0 {
			if _, werr := v.Write(buf[:n]); werr != nil {
				err = werr
				break
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			err = fmt.Errorf("receive after %d bytes: %w", v.n, rerr)
			break
		}
	}
	return sideResult{n: v.n, sum: h.Sum(nil), mismatch: v.mismatch, err: err}
}

// errMismatch stops the receiver at the first differing byte.
var errMismatch = errors.New("received data differs from the sent stream")

// verifier is an io.Writer that hashes what it is given and compares it with
// the expected stream; it fails at the first difference.
type verifier struct {
	src      *rand.ChaCha8
	h        hash.Hash
	want     []byte
	n        int64
	mismatch int64
	progress func(int64)
}

func (v *verifier) Write(p []byte) (int, error) {
	v.h.Write(p)
	if cap(v.want) < len(p) {
		v.want = make([]byte, len(p))
	}
	want := v.want[:len(p)]
	v.src.Read(want)
	if !bytes.Equal(p, want) {
		for i := range p {
			if p[i] != want[i] {
				v.mismatch = v.n + int64(i)
				break
			}
		}
		v.n += int64(len(p))
		return len(p), fmt.Errorf("%w at offset %d", errMismatch, v.mismatch)
	}
	v.n += int64(len(p))
	if v.progress != nil {
		v.progress(v.n)
	}
	return len(p), nil
}

// check returns an error unless both sides agree on a whole transfer.
func (tr *TransferRun) check(sr, cr sideResult, d time.Duration) (Result, error) {
	size := tr.size
	send, recv := cr, sr
	dir := "upload (client to server)"
	if tr.download {
		send, recv = sr, cr
		dir = "download (server to client)"
	}
	res := Result{Bytes: recv.n, Duration: d}
	if recv.mismatch >= 0 {
		return res, fmt.Errorf("%s of %d bytes: received data differs from the sent stream at offset %d (sent %d, received %d)", dir, size, recv.mismatch, send.n, recv.n)
	}
	if err := errors.Join(recv.err, send.err); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = fmt.Errorf("%w (no progress for %v, or past the timeout of %v)", err, transferIdle, transferTimeout(size))
		}
		return res, fmt.Errorf("%s of %d bytes: sent %d, received %d after %v: %w", dir, size, send.n, recv.n, d.Round(time.Millisecond), err)
	}
	if recv.n != size || send.n != size {
		return res, fmt.Errorf("%s: sent %d bytes, received %d, want %d", dir, send.n, recv.n, size)
	}
	if !bytes.Equal(send.sum, recv.sum) {
		return res, fmt.Errorf("%s of %d bytes: SHA-256 sent %x, received %x", dir, size, send.sum, recv.sum)
	}
	return res, nil
}

// transferSeed derives the stream's seed from its size, so a capture of a
// failed transfer can be regenerated.
func transferSeed(size int64) [32]byte {
	var s [32]byte
	copy(s[:], "sshvpn nstest transfer")
	binary.BigEndian.PutUint64(s[24:], uint64(size))
	return s
}

// withPort returns addr with port when addr has no port or port 0.
func withPort(addr string, port int) string {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	} else if p != "0" && p != "" {
		return addr
	}
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	return net.JoinHostPort(host, fmt.Sprint(port))
}
