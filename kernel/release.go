package kernel

import (
	"bytes"
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"
)

// A DHCP release has to cross the tunnel, so it must leave before the
// tunnel goes: Leave sends it on the tap while the Pump still runs, and
// waits until the Pump has taken it on. The Pump reads the tap and writes
// what it read to the SSH channel before it reads again, so the read
// after the one that returned the release means the release is in the
// SSH connection, ahead of whatever closes it.

// releaseWatch watches the frames the Pump reads from the tap for a DHCP
// message from the tap's own address to a server's port.
type releaseWatch struct {
	mac  net.HardwareAddr
	seen atomic.Bool   // a read returned it
	done chan struct{} // closed at the read after that
	once sync.Once
}

func newReleaseWatch(mac net.HardwareAddr) *releaseWatch {
	return &releaseWatch{mac: mac, done: make(chan struct{})}
}

// see looks at one frame the Pump read.
func (w *releaseWatch) see(frame []byte) {
	if isDHCPToServer(frame, w.mac) {
		w.seen.Store(true)
	}
}

// next is called as the Pump reads again.
func (w *releaseWatch) next() {
	if w.seen.Load() {
		w.once.Do(func() { close(w.done) })
	}
}

// isDHCPToServer reports whether frame is an Ethernet frame from mac
// carrying an unfragmented IPv4 UDP datagram to port 67, a DHCP server's.
func isDHCPToServer(frame []byte, mac net.HardwareAddr) bool {
	const eth = 14
	if len(frame) < eth+20+8 || !bytes.Equal(frame[6:12], mac) ||
		binary.BigEndian.Uint16(frame[12:14]) != 0x0800 || frame[eth]>>4 != 4 {
		return false
	}
	ihl := int(frame[eth]&0x0f) * 4
	if ihl < 20 || len(frame) < eth+ihl+8 || frame[eth+9] != 17 || binary.BigEndian.Uint16(frame[eth+6:eth+8])&0x1fff != 0 {
		return false
	}
	return binary.BigEndian.Uint16(frame[eth+ihl+2:eth+ihl+4]) == 67
}

// Read implements relay.Device: the device's packets, with an eye out for
// a DHCP release on its way out (see Leave). Otherwise it costs an atomic
// load per batch.
func (l *Local) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if w := l.release.Load(); w != nil {
		w.next()
	}
	n, err := l.Tun.Read(bufs, sizes, offset)
	if w := l.release.Load(); w != nil {
		for i := range n {
			w.see(bufs[i][offset : offset+sizes[i]])
		}
	}
	return n, err
}
