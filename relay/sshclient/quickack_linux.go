package sshclient

import (
	"net"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Stock sshd runs a tunnel without a tty and so never sets TCP_NODELAY on
// its connection: a small message it sends while another is still
// unacknowledged (a ping's reply, a window adjust) waits for our ACK, and
// our kernel delays that ACK. An idle ping through a stock sshd then took
// 16 ms at the median in some runs and at most 16.4 ms in every run (bench,
// sshvpn→sshd, lan; 0.4 ms otherwise). Asking the kernel for a quick ACK
// after every read of the connection lets sshd's Nagle go at once: 0.5 ms
// at the median and at most 1.1 in each of seven runs, against 16.1-16.3
// at the median in five of seven without and 16.3-16.4 at most in all
// seven, interleaved; the loaded p99 fell from 19-23 ms to 12-17 in three
// of four pairs. Throughput stayed within the spread but for upload ×4,
// which dips in some runs with quick ACKs (431-838 Mbit/s in 4 of 20) and
// in none of 20 without (874 at least). What they cost in upload is
// smaller segments from sshd (190 bytes of data against 245, at the same
// ~40 k/s: its Nagle coalesces less); skipping them while we upload did
// not remove the dips, and slow stretches of 400-580 Mbit/s showed up
// without quick ACKs too.
//
// TCP_QUICKACK is not sticky, so it is set again after each read: one
// setsockopt per read of the connection, which BufferReads makes reads of
// up to 64 KiB. An sshvpn peer sets TCP_NODELAY, as every Go program does,
// and is read without it.

// quickAckConn is a TCP connection that acknowledges what it reads at once.
type quickAckConn struct {
	*net.TCPConn
	rc  syscall.RawConn
	set func(fd uintptr) // made once: a closure per Read would allocate
	on  atomic.Bool
}

// quickAck wraps c, if it is TCP, so that its reads ask for a quick ACK.
func quickAck(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	q := &quickAckConn{TCPConn: tc, rc: rc}
	q.set = func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1) }
	q.on.Store(true)
	return q
}

func (c *quickAckConn) Read(p []byte) (int, error) {
	n, err := c.TCPConn.Read(p)
	if n > 0 && c.on.Load() {
		c.rc.Control(c.set) // fails only on a closed socket, which the next Read reports
	}
	return n, err
}

// noQuickAck stops c's quick ACKs, for a peer that does not need them.
func noQuickAck(c net.Conn) {
	if q, ok := c.(*quickAckConn); ok {
		q.on.Store(false)
	}
}
