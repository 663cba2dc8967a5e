// Package tun is the kernel backend's packet device: a Linux tun or tap
// interface as a relay.Device, read and written in batches, with TCP and UDP
// super-packets (super-frames on a tap) across it when the kernel offers
// offloads.
//
//   - tun.go: Config (which device, what MTU, whether super-packets pass
//     whole) and BatchSize.
//   - tun_linux.go: Open attaches to /dev/net/tun (TUNSETIFF), creating the
//     device or taking a free persistent one, as OpenSSH's -w does;
//     CheckAccess; Close, which deletes a device Open created.
//   - batch_linux.go: Read and Write through Go's poller, a batch per call,
//     allocating nothing; Write coalesces TCP segments into super-packets,
//     on a tap those behind one Ethernet header.
//   - offload_linux.go: the TUNSETOFFLOAD flags, and why only a Tun that
//     passes super-packets whole asks for them.
//   - tun_other.go: elsewhere every call fails with errors.ErrUnsupported.
//
// A device Open creates is not persistent: it disappears with its file
// descriptor, even if the process is killed. The device's addresses, routes
// and the rest of the host's configuration are the caller's, made through
// package kernel's undo log; the one change Open makes itself, Config.MTU,
// Close puts back on a device it did not create.
package tun
