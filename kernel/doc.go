// Package kernel gives sshvpn the host's own networking: tun and tap devices
// that implement relay.Device, and an Undo log that changes addresses,
// routes, sysctls and NAT rules and puts every one of them back.
//
// Everything here needs CAP_NET_ADMIN in the network namespace it runs in;
// errors say so and point at --backend netstack, the rootless alternative.
//
// Two rules shape the package:
//
//   - Nothing is left behind. A device Open creates is not persistent, so it
//     disappears with its file descriptor even if the process is killed.
//     Every host change goes through Undo, which records how to reverse it
//     before it returns, so a caller runs Undo.Revert on exit, on error and on
//     signal and the host is as it was.
//   - No shelling out. Links, addresses and routes go through netlink
//     (github.com/vishvananda/netlink), NAT through nftables
//     (github.com/google/nftables), sysctls through /proc/sys.
//
// Netlink, nftables and /proc/sys/net act on the network namespace of the
// calling OS thread, as the kernel does; tests exploit that by locking a
// thread into a fresh namespace.
//
// On systems other than Linux every operation fails with
// errors.ErrUnsupported.
package kernel
