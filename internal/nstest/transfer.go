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

// Transfer moves size bytes over one TCP connection and proves they arrived
// byte for byte. The server side listens inside server on listenAddr (port 0
// picks one); the client side dials dialAddr from inside client. When dialAddr
// has no port, or port 0, the listener's port is used, so dialAddr may name
// another address of the same host (or one a NAT maps to it).
//
// download=true makes the server send and the client receive; false, the
// reverse. The data is a seeded ChaCha8 stream generated on the fly, so sizes
// of gigabytes cost no memory. The receiver compares it with the expected
// stream as it reads (reporting the first differing offset) and both sides'
// SHA-256 sums must match. A mismatch, a short or long count, an error or a
// timeout (1 min + 1 s per MiB) fails the test.
func Transfer(t testing.TB, server *NS, listenAddr string, client *NS, dialAddr string, size int64, download bool) Result {
	t.Helper()
	ln := server.Listen(t, "tcp", listenAddr)
	dialAddr = withPort(dialAddr, ln.Addr().(*net.TCPAddr).Port)
	deadline := time.Now().Add(transferTimeout(size))
	seed := transferSeed(size)

	accepted := make(chan sideResult, 1)
	go func() {
		ln.(*net.TCPListener).SetDeadline(deadline)
		c, err := ln.Accept()
		if err != nil {
			accepted <- sideResult{err: fmt.Errorf("accept on %s: %w", listenAddr, err)}
			return
		}
		defer c.Close()
		accepted <- runSide(c, deadline, seed, size, download)
	}()

	start := time.Now()
	c, err := client.Dial(t, "tcp", dialAddr)
	if err != nil {
		ln.Close()
		<-accepted
		t.Fatalf("transfer: dial %s from %s: %v", dialAddr, client.Name, err)
	}
	cr := runSide(c, deadline, seed, size, !download)
	c.Close()
	sr := <-accepted
	ln.Close()
	return checkTransfer(t, sr, cr, size, download, time.Since(start))
}

// sideResult is what one end of a Transfer saw.
type sideResult struct {
	n        int64  // bytes written or read
	sum      []byte // SHA-256 of those bytes
	mismatch int64  // receiver: first offset that differs from the stream, -1 if none
	err      error
}

// runSide sends when send is true, otherwise receives.
func runSide(c net.Conn, deadline time.Time, seed [32]byte, size int64, send bool) sideResult {
	c.SetDeadline(deadline)
	if send {
		return sendStream(c, seed, size)
	}
	return recvStream(c, seed)
}

// sendStream writes size bytes of the stream, half-closes, then waits for the
// receiver to close so that its read of the end is not cut short by a reset.
func sendStream(c net.Conn, seed [32]byte, size int64) sideResult {
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
		if err != nil {
			return sideResult{n: n, err: fmt.Errorf("send after %d bytes: %w", n, err)}
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return sideResult{n: n, err: fmt.Errorf("send: close write: %w", err)}
	}
	if _, err := io.Copy(io.Discard, c); err != nil {
		return sideResult{n: n, sum: h.Sum(nil), err: fmt.Errorf("send: waiting for the receiver to close: %w", err)}
	}
	return sideResult{n: n, sum: h.Sum(nil)}
}

// recvStream reads to end of stream, hashing and checking against the stream.
func recvStream(c net.Conn, seed [32]byte) sideResult {
	h := sha256.New()
	v := &verifier{src: rand.NewChaCha8(seed), h: h, mismatch: -1}
	buf := make([]byte, transferChunk)
	_, err := io.CopyBuffer(v, c, buf)
	r := sideResult{n: v.n, sum: h.Sum(nil), mismatch: v.mismatch}
	if err != nil {
		r.err = fmt.Errorf("receive after %d bytes: %w", v.n, err)
	}
	return r
}

// verifier is an io.Writer that hashes what it is given and compares it with
// the expected stream.
type verifier struct {
	src      *rand.ChaCha8
	h        hash.Hash
	want     []byte
	n        int64
	mismatch int64
}

func (v *verifier) Write(p []byte) (int, error) {
	v.h.Write(p)
	if v.mismatch < 0 {
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
		}
	}
	v.n += int64(len(p))
	return len(p), nil
}

// checkTransfer fails the test unless both sides agree on a whole transfer.
func checkTransfer(t testing.TB, sr, cr sideResult, size int64, download bool, d time.Duration) Result {
	t.Helper()
	send, recv := cr, sr
	dir := "upload (client to server)"
	if download {
		send, recv = sr, cr
		dir = "download (server to client)"
	}
	if err := errors.Join(send.err, recv.err); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = fmt.Errorf("%w (timeout %v)", err, transferTimeout(size))
		}
		t.Fatalf("%s of %d bytes: sent %d, received %d: %v", dir, size, send.n, recv.n, err)
	}
	if recv.mismatch >= 0 {
		t.Fatalf("%s of %d bytes: received data differs from the sent stream at offset %d", dir, size, recv.mismatch)
	}
	if recv.n != size || send.n != size {
		t.Fatalf("%s: sent %d bytes, received %d, want %d", dir, send.n, recv.n, size)
	}
	if !bytes.Equal(send.sum, recv.sum) {
		t.Fatalf("%s of %d bytes: SHA-256 sent %x, received %x", dir, size, send.sum, recv.sum)
	}
	return Result{Bytes: recv.n, Duration: d}
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
