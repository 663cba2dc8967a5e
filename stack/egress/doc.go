// Package egress is the rootless gateway's egress policy: which destinations
// a client's flows may be re-originated to from the gateway host. The
// forwarders ask Policy.Decide once per new flow, before they dial.
//
// # Rules
//
// A rule is given to --allow or --deny (repeatable), or in authorized_keys
// as environment="SSHVPN_ALLOW=rule,rule" and environment="SSHVPN_DENY=…"
// (comma-separated, spaces around a rule ignored):
//
//	rule    = target [ ":" ports ] [ "/" proto ]
//	target  = "any" | ipv4 | ipv4 "/" bits | ipv6 | ipv6 "/" bits
//	ports   = port | port "-" port          port from 1 to 65535
//	proto   = "tcp" | "udp" | "icmp"        none: all three
//
// An IPv6 target with ports goes in brackets, the prefix length inside
// them: [2001:db8::1]:443, [2001:db8::/32]:80-90/tcp. Without brackets an
// IPv6 target never has ports (2001:db8::1:443 is an address). Examples:
//
//	198.18.0.0/15            every port and protocol in a network
//	198.18.2.2               one host (/32 or /128 implied)
//	10.0.0.0/8:80-90/tcp     TCP ports 80 to 90
//	0.0.0.0/0:53/udp         DNS over UDP to any IPv4 address
//	2001:db8::/32            an IPv6 network
//	[2001:db8::1]:443        one IPv6 host, port 443, TCP and UDP
//	::/0/icmp                ping to any IPv6 address
//	any:25/tcp               SMTP to any address of either family
//
// "any" is every address of both families; 0.0.0.0/0 and ::/0 are one
// family each. A rule with ports matches only TCP and UDP flows (ICMP has no
// ports), so a port with /icmp is an error. Host bits are cleared
// (10.1.2.3/8 is 10.0.0.0/8). Zones (fe80::1%eth0) and IPv4-mapped forms
// (::ffff:10.0.0.0/104) are refused: write the IPv4 form, since mapped
// destinations are judged as IPv4. "any" and protocol names ignore case.
//
// # Order
//
// First match wins, in this order:
//
//  1. the client's key's SSHVPN_ALLOW and SSHVPN_DENY rules, in the order
//     of its authorized_keys line;
//  2. --allow and --deny, in command-line order;
//  3. the built-ins: allow the gateway's own virtual addresses (its DNS),
//     then deny 0.0.0.0/8 and :: (Linux delivers both to loopback),
//     127.0.0.0/8 and ::1, 169.254.0.0/16 and fe80::/10 (link-local,
//     including the 169.254.169.254 cloud metadata service), the metadata
//     services at fd00:ec2::254 (AWS IPv6) and 100.100.100.200 (Alibaba
//     Cloud), multicast 224.0.0.0/4 and ff00::/8 and broadcast
//     255.255.255.255 (they would reach the host's LAN), the gateway host's
//     own addresses as they are at that moment (with their subnets' anycast
//     and broadcast addresses), and the tunnels' subnets (clients may not
//     reach one another);
//  4. allow: the rest is the internet and whatever the host can reach.
//
// So --allow 127.0.0.1:8080/tcp opens one loopback service, and
// --deny 10.0.0.0/8 keeps clients off a LAN.
//
// # Decisions
//
// Destinations are judged as the gateway would dial them: an IPv4-mapped
// address (::ffff:127.0.0.1) as its IPv4 address, and a zone dropped. A
// destination in the NAT64 prefix 64:ff9b::/96 meets the built-in denies
// twice, as itself and as its embedded IPv4 address, so 64:ff9b::7f00:1
// is denied as 127.0.0.1 would be; an explicit rule for the 64:ff9b:: form
// decides first. Other translation prefixes (64:ff9b:1::/48, 6to4, Teredo)
// reach an embedded address only through a translator or tunnel interface
// the operator set up on the host; --deny covers those.
//
// # The host's own addresses
//
// The host's own non-loopback addresses are denied by default: from the
// host itself its public or LAN address reaches the same listeners as
// 127.0.0.1, including services on 0.0.0.0 that a firewall hides from the
// outside. So are the addresses through which a packet from the host
// reaches its own listeners or its whole link: the subnet-router anycast
// address of each on-link IPv6 prefix, and the broadcast and network
// addresses of each IPv4 subnet (HostSet.Set says which).
//
// The host gains and loses addresses while the gateway runs (DHCP, IPv6
// privacy addresses, a new interface, an address on lo). The gateway
// follows them into a HostSet (Config.HostAddrs) that every Policy reads at
// each decision: an address the host gains is denied from then on, and one
// it loses is not, since it may be another host's by then (a lease handed
// on, a failover address moved); --deny keeps an address denied for good.
package egress
