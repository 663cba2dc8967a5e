//go:build linux

package kernel

import (
	"errors"

	"golang.org/x/sys/unix"

	"github.com/sshvpn/sshvpn/relay/offload"
)

// Offloads. A tun opened with IFF_VNET_HDR and these TUNSETOFFLOAD flags
// hands us what the stack would have given a NIC with TSO and USO: TCP
// and UDP super-packets of up to 64 KiB behind a virtio-net header, with
// their checksum left partial, and takes the same from us. One read then
// moves what took forty, and one write hands the receiving stack one
// packet to route and deliver instead of forty (linux/if_tun.h).
const (
	tunFCsum = 0x01
	tunFTSO4 = 0x02
	tunFTSO6 = 0x04
	tunFUSO4 = 0x20
	tunFUSO6 = 0x40

	tunOffloads    = tunFCsum | tunFTSO4 | tunFTSO6 | tunFUSO4 | tunFUSO6
	tunOffloadsTCP = tunFCsum | tunFTSO4 | tunFTSO6 // before Linux 6.2, no USO
)

// maxGSOPacket is the largest packet a tun with offloads hands us: the
// kernel's GSO limit is 64 KiB, and an IPv6 packet's payload length field
// stops at 65535 behind its 40-byte header.
const maxGSOPacket = 40 + 65535

// enableOffload asks the kernel for super-packets. It reports false when
// the kernel refuses every set of offloads; the Tun then reads plain
// packets, behind a header that is always empty.
func enableOffload(fd int) bool {
	for _, flags := range []int{tunOffloads, tunOffloadsTCP} {
		if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, flags); err == nil {
			return true
		} else if !errors.Is(err, unix.EINVAL) {
			return false
		}
	}
	return false
}

// splitter holds the super-packet one Read could not hand out whole: a
// Tun that passes plain packets splits each into its segments, and a batch
// may end in the middle of one.
type splitter struct {
	buf   []byte // one read from the device: header and packet
	pkt   []byte // the packet in buf still being split, or nil
	hdr   offload.Hdr
	next  int // the next segment of pkt to hand out
	total int // pkt's segments
}

func newSplitter() *splitter { return &splitter{buf: make([]byte, offload.HdrLen+maxGSOPacket)} }

// take reads one frame of size bytes from s.buf and hands out as much of
// it as bufs hold; the rest waits in s for the next call.
func (s *splitter) take(size int, bufs [][]byte, sizes []int, offset int) int {
	if size < offload.HdrLen || s.hdr.Decode(s.buf[:size]) != nil {
		return 0 // the kernel writes a well-formed header; nothing to hand out otherwise
	}
	pkt := s.buf[offload.HdrLen:size]
	if s.hdr.GSOType == offload.GSONone && s.hdr.Flags&offload.FlagNeedsCsum == 0 {
		if offset+len(pkt) > len(bufs[0]) {
			return 0
		}
		sizes[0] = copy(bufs[0][offset:], pkt)
		return 1
	}
	total, err := offload.Segments(pkt, s.hdr)
	if err != nil {
		return 0
	}
	s.pkt, s.next, s.total = pkt, 0, total
	return s.resume(bufs, sizes, offset)
}

// resume hands out the next segments of the pending super-packet.
func (s *splitter) resume(bufs [][]byte, sizes []int, offset int) int {
	k, err := offload.Split(s.pkt, s.hdr, s.next, bufs, sizes, offset)
	s.next += k
	if err != nil || s.next >= s.total {
		s.pkt = nil
	}
	return k
}
