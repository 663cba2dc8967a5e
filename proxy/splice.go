package proxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// spliceBufSize matches x/crypto/ssh's largest channel packet, so one read
// from a direct-tcpip channel fills at most one buffer.
const spliceBufSize = 32 << 10

var spliceBufs = sync.Pool{New: func() any { return new([spliceBufSize]byte) }}

// halfCloser is a connection that can end its write side alone (TCP,
// Unix sockets, SSH channels).
type halfCloser interface{ CloseWrite() error }

// splice copies client→far and far→client until both directions end, then
// closes both. An EOF is passed on as a half-close where the destination
// can take one; any other error (a reset) ends both directions at once.
// It starts one goroutine, through spawn, and returns when it is done.
func splice(client, far net.Conn, st *Stats, spawn func(func()) bool) {
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			client.Close()
			far.Close()
		})
	}
	done := make(chan struct{})
	if !spawn(func() {
		defer close(done)
		copyHalf(client, far, &st.bytesIn, closeBoth)
	}) {
		closeBoth()
		return
	}
	copyHalf(far, client, &st.bytesOut, closeBoth)
	<-done
	closeBoth()
}

// copyHalf copies src to dst, counting into n, without allocating.
func copyHalf(dst, src net.Conn, n *atomic.Uint64, closeBoth func()) {
	buf := spliceBufs.Get().(*[spliceBufSize]byte)
	defer spliceBufs.Put(buf)
	for {
		r, rerr := src.Read(buf[:])
		if r > 0 {
			w, werr := dst.Write(buf[:r])
			n.Add(uint64(w))
			if werr != nil {
				closeBoth()
				return
			}
		}
		if rerr == nil {
			continue
		}
		if !errors.Is(rerr, io.EOF) {
			closeBoth()
			return
		}
		if hc, ok := dst.(halfCloser); ok && hc.CloseWrite() == nil {
			return
		}
		closeBoth()
		return
	}
}
