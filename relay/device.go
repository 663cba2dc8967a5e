package relay

import "errors"

// Device moves whole packets in batches. Everything that carries packets in
// sshvpn is a Device: an SSH channel (sshchan.Channel), a kernel tun/tap
// (kernel.Tun), later the userspace stack. Pump joins two of them.
//
// Callers own the buffers: packet i is bufs[i][offset:offset+sizes[i]].
// offset is headroom, at least Headroom bytes, that a Device may use to write
// its own header in place in front of the packet (the 4-byte address family
// of tun@openssh.com, a GSO packet's virtio-net header), so no packet is
// copied on the way through.
type Device interface {
	// Read blocks until at least one packet is available, then reads as many
	// as are ready, up to len(bufs) and BatchSize, into bufs[i][offset:],
	// storing each length in sizes[i]. It returns the number of packets read.
	// Packets that cannot be framed are counted as drops and skipped; they are
	// never returned.
	Read(bufs [][]byte, sizes []int, offset int) (n int, err error)

	// Write sends bufs[i][offset:] for each i, in order, and returns how many
	// were sent. An error wrapping ErrDropped concerns packet n alone: it was
	// not sent, the Device stays usable, and the caller goes on with
	// bufs[n+1:]. Any other error is fatal for the Device.
	Write(bufs [][]byte, offset int) (n int, err error)

	// BatchSize is the most packets one Read or Write handles. It is fixed for
	// the Device's lifetime.
	BatchSize() int

	// MTU is the largest packet, without headroom, the Device carries: the IP
	// packet in point-to-point mode, the Ethernet frame less its 14-byte
	// header in ethernet mode.
	MTU() int

	// Close unblocks Read and Write; later calls return net.ErrClosed.
	Close() error
}

// Headroom is the offset Pump passes to Read and Write: room for the
// tun@openssh.com address family word (4 bytes) or a virtio-net header
// (10 bytes, package offload) in front of a packet, rounded up so that
// packets start 16-byte aligned.
const Headroom = 16

// ErrDropped is wrapped by a Write error that concerns one packet only.
// Use errors.As with *DropError to learn why.
var ErrDropped = errors.New("packet dropped")

// DropError says why Write dropped one packet.
type DropError struct {
	Reason DropReason
	Err    error // the cause, if any
}

func (e *DropError) Error() string {
	if e.Err != nil {
		return "packet dropped: " + e.Reason.String() + ": " + e.Err.Error()
	}
	return "packet dropped: " + e.Reason.String()
}

// Is makes errors.Is(err, ErrDropped) hold without allocating, which
// Unwrap() []error would do on every call.
func (e *DropError) Is(target error) bool { return target == ErrDropped }

func (e *DropError) Unwrap() error { return e.Err }

// GSO reports whether d passes GSO super-packets whole: it reads them, and
// takes them on Write, each behind its virtio-net header in the headroom,
// the offload.HdrLen bytes before the packet. A Device says so with a
// method GSO() bool; a packet whose header is all zeros is a plain one.
func GSO(d Device) bool {
	g, ok := d.(interface{ GSO() bool })
	return ok && g.GSO()
}
