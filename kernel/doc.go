// Package kernel is sshvpn's kernel backend: the host's own networking, for
// a gateway (Gateway, one tun/tap device per tunnel) and for a client
// (Local, its device with the gateway's addresses, routes and name servers).
// The device itself is package kernel/tun.
//
// Everything here needs CAP_NET_ADMIN in the network namespace it runs in,
// but one thing: a client may attach a persistent tun or tap that root made
// for its user once (ip tuntap add tun7 mode tun user alice), as ssh -w
// does, and then changes nothing and says what the device lacks
// (FindPremade, LocalConfig.Premade). Other errors say what needs root and
// point at --backend netstack, the rootless alternative.
// On systems other than Linux every operation fails with
// errors.ErrUnsupported (the *_other.go files).
//
// Two rules shape the package:
//
//   - Nothing is left behind. Every host change goes through an undo log,
//     which records how to reverse it before it returns, so a caller reverts
//     on exit, on error and on signal and the host is as it was. With a
//     Journal the log is on disk too, so the next start undoes what a
//     process killed outright left.
//   - No shelling out. Links, addresses and routes go through netlink
//     (github.com/vishvananda/netlink), NAT through nftables
//     (github.com/google/nftables), sysctls through /proc/sys, name servers
//     through systemd-resolved's D-Bus API.
//
// Netlink, nftables and /proc/sys/net act on the network namespace of the
// calling OS thread, as the kernel does; tests exploit that by locking a
// thread into a fresh namespace (kernel/internal/kerneltest).
//
// The files, by idea:
//
// The undo log, every kind of host change and its reversal:
//
//   - undo.go: undoLog, which makes a change, records it and reverts the
//     record newest first.
//   - change.go, change_linux.go: change, one host change as the journal
//     stores it, and how each kind is reverted.
//   - route_linux.go: links up, MTUs, addresses, routes.
//   - sysctl_linux.go: sysctls, put back only if nobody changed them since.
//   - nat_linux.go, natrules_linux.go: masquerading in the one nftables table
//     sshvpn owns, and the rules' expressions.
//   - errors.go: causeError, advice that still wraps its errno.
//
// The journal, the undo log on disk:
//
//   - journal.go: Journal, OpenJournal, Recover (sshvpn cleanup) and
//     DefaultStateDir; a journal is replayed newest first, skips what it
//     struck and only runs in the network namespace it was written in.
//   - netns_linux.go: which namespace that is, and whether it still exists.
//
// The gateway:
//
//   - gateway.go: Gateway (relay.Opener) and one tunnel's device with the
//     changes made for it; NAT and forwarding for the whole gateway.
//   - guard.go: sourceGuard, which drops packets from addresses the tunnel
//     does not hold, as WireGuard's AllowedIPs do.
//   - claims.go: claimTable, which tunnel holds each client address, and
//     each key's stable address.
//   - bridge.go: bridged tunnels (--bridge, --create-bridge): an ethernet
//     tunnel's tap as a port of the gateway's LAN bridge, the MAC and
//     addresses it learns from its client's frames, its status text.
//   - bridge_linux.go: joining a bridge, and swapping an interface for a
//     bridge with its addresses and routes (one change, undone whole).
//   - portsec_linux.go: port security in sshvpn's nftables bridge table, a
//     chain and counted drop rules per tap, sets of the host's and the
//     tunnels' addresses.
//   - check_linux.go: what the host must allow or must not already have
//     (CheckAccess, a tunnel network no interface overlaps, firewalls that
//     drop forwarded packets).
//
// The client:
//
//   - client.go: Local, the client's device set up from the flags or from
//     what the gateway said, and Update on a reconnect.
//   - premade.go, premade_linux.go: a client without CAP_NET_ADMIN on the
//     device root prepared for its user: which one (FindPremade), attached
//     as it is, and each missing address, route, MTU or name server named
//     with the command root runs.
//   - fulltunnel_linux.go: a full tunnel by policy routing, with a Bypass
//     table and mark that keep the SSH transport outside it.
//   - dns.go, dns_linux.go: the gateway's name servers, in
//     systemd-resolved for the tunnel's link or, with --dns-global, in
//     /etc/resolv.conf.
//
// The undo log, the journal and the features stay in one package because
// each feature adds its own kinds of change (a routing rule, an nftables
// table, a link's name servers) that the journal must replay after a crash:
// apart, the change records and their reversal would have to be exported
// for no caller but each other.
package kernel
