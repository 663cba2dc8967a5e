// Package offload lets sshvpn use a Linux tun's segmentation offloads while
// the tunnel itself carries ordinary packets.
//
// A tun opened with IFF_VNET_HDR and TUNSETOFFLOAD hands out TCP and UDP
// "super-packets" of up to 64 KiB behind a virtio_net_hdr, and accepts them
// the same way, so the kernel's stack runs once per 64 KiB instead of once
// per 1500 bytes. Stock OpenSSH on the far side carries only MTU-sized,
// fully checksummed IP packets. Split turns what the tun reads into such
// packets (GSO); a Coalescer does the reverse for what is written to the
// tun (GRO). Neither allocates per call, and neither trusts a header or a
// packet enough to index past it: bad input is an error or is passed
// through, never a panic.
package offload
