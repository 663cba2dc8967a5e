//go:build linux

package tun

import (
	"errors"

	"golang.org/x/sys/unix"
)

// Offloads. A tun opened with IFF_VNET_HDR and these TUNSETOFFLOAD flags
// hands us what the stack would have given a NIC with TSO and USO: TCP
// and UDP super-packets of up to 64 KiB behind a virtio-net header, with
// their checksum left partial, and takes the same from us. One read then
// moves what took forty, and one write hands the receiving stack one
// packet to route and deliver instead of forty (linux/if_tun.h). A tap
// does the same with Ethernet frames, one header in front of the
// super-packet, the virtio-net header's offsets counted from the frame's
// start; a bridge it belongs to forwards such a frame whole and segments
// it only for a port without the offload.
const (
	tunFCsum = 0x01
	tunFTSO4 = 0x02
	tunFTSO6 = 0x04
	tunFUSO4 = 0x20
	tunFUSO6 = 0x40

	tunOffloads    = tunFCsum | tunFTSO4 | tunFTSO6 | tunFUSO4 | tunFUSO6
	tunOffloadsTCP = tunFCsum | tunFTSO4 | tunFTSO6 // before Linux 6.2, no USO
)

// enableOffload asks the kernel for super-packets when whole, and for
// plain packets otherwise. It reports false when the kernel refuses every
// set of offloads.
//
// Only a Tun that passes super-packets whole gets them. Splitting them
// here for a stock peer saved reads but cost latency: the tun's queue of
// 500 packets then holds 500 super-packets, tens of MiB in front of the SSH
// channel (bench/README.md, "Why the constants are what they are").
// Without TSO the kernel segments before it queues, as for any device
// without offloads. Writing super-packets needs
// only IFF_VNET_HDR, so the coalescer works either way.
func enableOffload(fd int, whole bool) bool {
	if !whole {
		return unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, 0) == nil
	}
	for _, flags := range []int{tunOffloads, tunOffloadsTCP} {
		if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, flags); err == nil {
			return true
		} else if !errors.Is(err, unix.EINVAL) {
			return false
		}
	}
	return false
}
