// Package hostaddr follows the host's own interface addresses as they
// change, for the rootless gateway's egress policy, which denies them
// (egress.HostSet): an address the host gains while the gateway runs (a
// DHCP renewal, an IPv6 privacy address, a new interface, a /32 on lo)
// would otherwise expose the host's services bound to 0.0.0.0 and ::.
//
// Watch lists the addresses of the network namespace it is called in, then
// lists them again after each change the kernel reports. On Linux the
// reports come over an rtnetlink socket subscribed to address changes,
// which needs no privilege; where there is none, or the subscription fails,
// the addresses are listed every Config.PollInterval instead.
//
//	watch.go         Watcher: the first listing, the loop, Close
//	source_linux.go  rtnetlink: listings and change reports
//	source_other.go  other systems: net.InterfaceAddrs, no reports
package hostaddr
