package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/sshvpn/sshvpn/kernel/tun"
	"github.com/sshvpn/sshvpn/relay"
)

// A bridged tunnel is an ethernet tunnel whose tap is a port of a bridge on
// the gateway's LAN (GatewayConfig.Bridge or CreateBridge): the client is a
// host of that LAN, takes its address from the LAN's DHCP server and router
// advertisements, and the gateway routes nothing for it. Point-to-point
// tunnels of the same gateway keep the --tun-address behaviour.
//
// Such a tap needs no SSHVPN_ALLOWED_IPS: the L3 source guard does not
// apply, since the tunnel's frames may carry any address of the LAN. Port
// security (portsec_linux.go) takes its place, in sshvpn's nftables bridge
// table: the tap passes frames from the first source MAC its client used,
// unless another station has it (another tunnel, or a port of the bridge:
// a LAN host, the bridge itself), and no router advertisements, redirects,
// IGMP or MLD queries or DHCP server messages; no ARP, neighbour advertisement or neighbour or
// router solicitation claiming an address of the gateway host or one
// another bridged tunnel holds, and no IP packet from one (a claim of its
// own to whoever trusts a source). A tunnel's DHCPv4 requests must carry
// its MAC as chaddr: one locked MAC cannot take the LAN's pool in many
// MACs' names (many client identifiers, option 61, it still can: servers
// key leases by them, but each lease names that MAC). A tunnel holds the addresses its own frames used first
// (as IP source, ARP sender, or NA target), at most maxHeldPerFamily of
// each family; the first tunnel to use an address keeps it until it goes.
// That is first come, first served, with no DHCP lease or SLAAC behind
// it: a hostile tunnel can squat up to maxHeldPerFamily addresses of each
// family that no station uses yet, and should the LAN's DHCP server later
// lease one to another tunnel, that tunnel's frames from it are dropped as
// another tunnel's. Hosts plugged into the LAN are not protected at all
// (a tunnel may claim their addresses, as any host of the LAN may). The
// tap's Write drops what the table cannot judge or never sees: tagged
// frames, frames to the LAN's link control protocols, IPv6 first
// fragments that hide their upper layer, fragmented DHCPv4 requests.

// maxHeldPerFamily bounds the addresses one bridged tunnel holds per
// family: a client's DHCP lease or SLAAC addresses, link-local and privacy
// ones included, fit; one cycling through the LAN's addresses cannot lock
// every other tunnel out of them.
const maxHeldPerFamily = 8

// DefaultBridgeName is the bridge --create-bridge makes for iface:
// "br-" and its name, cut to the 15 bytes an interface name may have.
func DefaultBridgeName(iface string) string {
	name := "br-" + iface
	if len(name) > 15 {
		name = name[:15]
	}
	return name
}

// Drop reasons: each drop rule's comment, which is also how the counters
// are told apart when they are read back.
const (
	dropOtherMAC     = "another MAC than the tunnel's first"
	dropRouterAdvert = "router advertisement"
	dropRedirect     = "ICMPv6 redirect"
	dropRedirect4    = "ICMP redirect"
	dropQuery        = "IGMP or MLD query"
	dropDHCPv4Server = "DHCPv4 server message"
	dropDHCPv6Server = "DHCPv6 server message"
	dropDHCPChaddr   = "DHCPv4 request for another MAC than the tunnel's"
	dropARPHost      = "ARP claiming the gateway host's address"
	dropARPHeld      = "ARP claiming another tunnel's address"
	dropNAHost       = "neighbour advertisement claiming the gateway host's address"
	dropNAHeld       = "neighbour advertisement claiming another tunnel's address"
	dropSolHost      = "neighbour or router solicitation claiming the gateway host's address"
	dropSolHeld      = "neighbour or router solicitation claiming another tunnel's address"
	dropSrcHost      = "IP packet from the gateway host's address"
	dropSrcHeld      = "IP packet from another tunnel's address"
)

// Neighbour discovery's ICMPv6 types (RFC 4861) that claim an address:
// solicitations their source, when they carry a source link-layer
// address option (a receiver's entry for the source takes it), and the
// advertisement its target.
const (
	icmpv6RouterSol = 133
	icmpv6NeighSol  = 135
	icmpv6NeighAdv  = 136
)

// portSecurity is what the bridged tunnels of one gateway share: the
// bridge, the host's addresses, and which tunnel holds which address.
type portSecurity struct {
	bridge string
	mtu    int
	log    *slog.Logger
	warn   *relay.Throttle

	mu   sync.Mutex
	host map[netip.Addr]bool
	held map[netip.Addr]*bridgedTunnel
	macs map[[6]byte]*bridgedTunnel // the MAC each tap is locked to
}

// setupBridge swaps CreateBridge's interface for a bridge when asked, and
// makes the port security table, filled with the host's addresses.
func (g *Gateway) setupBridge() error {
	name := g.cfg.Bridge
	if iface := g.cfg.CreateBridge; iface != "" {
		name = DefaultBridgeName(iface)
		if err := g.global.SwapForBridge(iface, name); err != nil {
			return err
		}
		g.cfg.Log.Info("interface swapped for a bridge: its addresses and routes are on the bridge, and it is the bridge's port until sshvpn stops",
			"interface", iface, "bridge", name)
	}
	mtu, err := bridgeMTU(name)
	if err != nil {
		return err
	}
	host, err := hostAddresses()
	if err != nil {
		return fmt.Errorf("port security on %s: %w", name, err)
	}
	if err := g.global.AddPortTable(host); err != nil {
		return fmt.Errorf("port security on %s: %w", name, err)
	}
	g.ports = &portSecurity{bridge: name, mtu: mtu, log: g.cfg.Log, warn: g.warn,
		host: make(map[netip.Addr]bool), held: make(map[netip.Addr]*bridgedTunnel), macs: make(map[[6]byte]*bridgedTunnel)}
	g.ports.setHost(host)
	return nil
}

// BridgeName is the bridge ethernet tunnels join, or "" when they are not
// bridged.
func (g *Gateway) BridgeName() string {
	if g.ports == nil {
		return ""
	}
	return g.ports.bridge
}

// SetHostAddresses tells the gateway the host's addresses as they change
// (hostaddr's Watcher hands them over): no bridged tunnel may claim one in
// an ARP or neighbour advertisement. It does nothing without bridging.
func (g *Gateway) SetHostAddresses(addrs []netip.Prefix) {
	if g.ports == nil {
		return
	}
	host := make([]netip.Addr, 0, len(addrs))
	for _, p := range addrs {
		host = append(host, p.Addr())
	}
	g.ports.setHost(host)
	if err := setHostAddrs(portTableName(), host); err != nil {
		g.cfg.Log.Warn("port security: cannot update the host's addresses; the last ones stay protected", "err", err)
	}
}

func (p *portSecurity) setHost(addrs []netip.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.host)
	for _, a := range addrs {
		p.host[a.Unmap().WithZone("")] = true
	}
}

// take gives a to t unless the host or another tunnel has it.
func (p *portSecurity) take(a netip.Addr, t *bridgedTunnel) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.host[a] {
		return false
	}
	if o := p.held[a]; o != nil && o != t {
		return false
	}
	p.held[a] = t
	return true
}

// maxRefusedMACs bounds the MACs a tap tries before all its frames but
// the last MAC's are dropped, and retryRefusedMAC how often that one is
// tried again: each try reads the bridge's forwarding database. A client
// reconnecting with a fixed MAC gets it once its old tunnel has gone.
const (
	maxRefusedMACs  = 4
	retryRefusedMAC = time.Second
)

// takeMAC gives mac to t unless it is another station's, and says whose
// it is then: another bridged tunnel's, or one the bridge has learnt or
// owns on another port (a LAN host's, the bridge's own, a port's). A
// bridge learns a source MAC on the port it last came from, so a tap
// locked to such a MAC would be sent what is for that station.
func (p *portSecurity) takeMAC(mac [6]byte, t *bridgedTunnel) string {
	p.mu.Lock()
	o := p.macs[mac]
	p.mu.Unlock()
	if o != nil && o != t {
		return "another bridged tunnel's (" + o.Name() + ")"
	}
	port, err := fdbPort(p.bridge, mac, t.index)
	if err != nil {
		return "unknown: " + err.Error()
	}
	if port != "" {
		return "on the bridge's port " + port
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if o := p.macs[mac]; o != nil && o != t {
		return "another bridged tunnel's (" + o.Name() + ")"
	}
	p.macs[mac] = t
	return ""
}

// releaseMAC frees the MAC t is locked to.
func (p *portSecurity) releaseMAC(t *bridgedTunnel) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for m, o := range p.macs {
		if o == t {
			delete(p.macs, m)
		}
	}
}

// release frees what t holds.
func (p *portSecurity) release(t *bridgedTunnel, addrs []netip.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range addrs {
		if p.held[a] == t {
			delete(p.held, a)
		}
	}
}

// openBridged makes dev a port of the bridge, guarded before it joins.
func (g *Gateway) openBridged(dev *tun.Tun, req relay.TunnelRequest) (relay.Tunnel, error) {
	t := &bridgedTunnel{Tun: dev, undo: g.cfg.undo(), ports: g.ports, key: req.Key}
	if err := t.attach(); err != nil {
		t.Close()
		return nil, fmt.Errorf("tunnel %s: %w", dev.Name(), err)
	}
	return t, nil
}

// bridgedTunnel is an ethernet tunnel's tap on the bridge.
type bridgedTunnel struct {
	*tun.Tun
	undo  *undoLog
	ports *portSecurity
	key   string
	index int // the tap's interface index: its chain in the bridge table

	mu     sync.Mutex
	closed bool
	learnt bool
	// refused counts the MACs the tap would not lock to: the last, when,
	// is tried again after retryRefusedMAC (its station may have gone).
	refused       int
	lastRefused   [6]byte
	lastRefusedAt time.Time
	mac           [6]byte
	mine          []netip.Addr // held, in the order taken
	n4, n6        int
	once          sync.Once
}

// attach guards the tap, then joins it to the bridge and brings it up:
// same MTU as the bridge, so that it does not shrink the LAN's; no
// address, IPv6 off on the tap itself (the host talks to the LAN through
// the bridge, not through a port).
func (t *bridgedTunnel) attach() error {
	if err := setMTU(t.Tun, t.undo, t.ports.mtu); err != nil {
		return err
	}
	if err := t.undo.SetSysctl("net/ipv6/conf/"+t.Name()+"/disable_ipv6", "1"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	index, err := linkIndex(t.Name())
	if err != nil {
		return err
	}
	t.index = index
	if err := t.undo.AddPort(t.Name(), index); err != nil {
		return err
	}
	if err := t.undo.SetMaster(t.Name(), t.ports.bridge); err != nil {
		return err
	}
	return t.undo.LinkUp(t.Name())
}

// Write implements relay.Device: the first frame teaches the tap its
// client's MAC, and the addresses frames claim are recorded as this
// tunnel's, each before its frame goes in. Once the tunnel is closed it
// fails with net.ErrClosed, as a closed tap does: its frames are not
// dropped as spoofed.
func (t *bridgedTunnel) Write(bufs [][]byte, offset int) (int, error) {
	for i, b := range bufs {
		if !t.admit(b[offset:]) {
			if t.isClosed() {
				return 0, fmt.Errorf("write %s: %w", t.Name(), net.ErrClosed)
			}
			n, err := t.Tun.Write(bufs[:i], offset)
			if err != nil {
				return n, err
			}
			return i, errSpoofed
		}
	}
	return t.Tun.Write(bufs, offset)
}

func (t *bridgedTunnel) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// admit reports whether frame f may go into the tap, learning from it. A
// frame from another MAC than the first goes in: the bridge table drops
// and counts it. Tagged frames never do: a VLAN-aware bridge would put
// them on another LAN, past every rule here. Nor do frames to the LAN's
// link control protocols, which a bridge with STP on takes for itself
// before its nftables hooks see them.
func (t *bridgedTunnel) admit(f []byte) bool {
	if len(f) < 14 {
		return false
	}
	if et := binary.BigEndian.Uint16(f[12:]); et == etherVLAN || et == etherQinQ || et == etherQinQ9100 {
		t.warnDrop("a VLAN-tagged frame: a bridged tunnel carries untagged frames only", netip.Addr{})
		return false
	}
	if linkControl(f[:6]) {
		t.warnDrop("a frame to the LAN's link control protocols (spanning tree, LLDP, 802.1X, MRP, Cisco's): a bridged tunnel is a host, not a switch", netip.Addr{})
		return false
	}
	if why := ip6Unreadable(f); why != "" {
		t.warnDrop(why, netip.Addr{})
		return false
	}
	if dhcpFragment(f) {
		t.warnDrop(whyDHCPFragment, netip.Addr{})
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	if !t.learnt {
		if !t.learn(f[6:12]) {
			return false
		}
	} else if [6]byte(f[6:12]) != t.mac {
		return true
	}
	if foreignLinkAddr(f, t.mac) {
		t.warnDrop("ARP or neighbour discovery giving another link-layer address than the tunnel's MAC", netip.Addr{})
		return false
	}
	if a, ok := claimedAddr(f); ok && !t.holds(a) {
		t.hold(a)
	}
	return true
}

// etherQinQ9100 is the service tag's type before 802.1ad, which switches
// may still be set to take as a tag.
const etherQinQ9100 = 0x9100

// linkControl reports whether dst is a group address of the protocols a
// switch or bridge acts on: IEEE 802.1Q's reserved 01-80-C2-00-00-00 to
// -0F (spanning tree, LACP, 802.1X, LLDP) and -20 to -2F (MRP: MVRP
// registers VLANs), and Cisco's 01-00-0C-CC-CC-CC (CDP, VTP, DTP, which
// can make the gateway's switch port a trunk) and -CD (PVST+). A Linux
// bridge without STP forwards spanning tree's, and anything else its group
// forwarding mask names: a client's BPDU could move the LAN's root or shut
// the gateway's switch port down (BPDU guard).
func linkControl(dst []byte) bool {
	if dst[0] == 0x01 && dst[1] == 0x80 && dst[2] == 0xc2 && dst[3] == 0 && dst[4] == 0 {
		return dst[5] <= 0x0f || dst[5]&0xf0 == 0x20
	}
	return dst[0] == 0x01 && dst[1] == 0x00 && dst[2] == 0x0c && dst[3] == 0xcc && dst[4] == 0xcc && dst[5]&0xfe == 0xcc
}

// learn locks the tap to src, the client's MAC; the caller holds t.mu.
func (t *bridgedTunnel) learn(src []byte) bool {
	if src[0]&1 != 0 || [6]byte(src) == [6]byte{} {
		t.warnDrop("a first frame from a multicast or zero MAC: nothing to lock the tap to", netip.Addr{})
		return false
	}
	again := t.refused > 0 && [6]byte(src) == t.lastRefused
	if again && time.Since(t.lastRefusedAt) < retryRefusedMAC || !again && t.refused >= maxRefusedMACs {
		return false
	}
	mac := net.HardwareAddr(append([]byte(nil), src...))
	if whose := t.ports.takeMAC([6]byte(src), t); whose != "" {
		t.refuse(src, again)
		if !again {
			t.ports.log.Warn("port security: not locking the tap to a MAC that is "+whose+"; dropping its frames",
				"device", t.Name(), "mac", mac, "key", t.key, "refused", t.refused, "refused_max", maxRefusedMACs)
		}
		return false
	}
	// A MAC the table would not take is refused as one another station
	// has: tried again after retryRefusedMAC, not on every frame, each
	// try costing a dump of the bridge's forwarding database and a
	// netlink transaction.
	if err := lockMAC(t.index, mac); err != nil {
		t.ports.releaseMAC(t)
		t.refuse(src, again)
		if n, ok := t.ports.warn.Allow(whyLockFailed); ok {
			t.ports.log.Warn("port security: "+whyLockFailed+"; dropping its frames",
				"device", t.Name(), "mac", mac, "key", t.key, "err", err, "dropped_since_last", n)
		}
		return false
	}
	t.mac, t.learnt = [6]byte(src), true
	t.ports.log.Info("bridged tunnel: client MAC learnt; frames from any other MAC are dropped",
		"device", t.Name(), "bridge", t.ports.bridge, "mac", mac.String(), "key", t.key)
	return true
}

// whyLockFailed is the throttle's key for a failed lockMAC.
const whyLockFailed = "cannot lock the tap to its client's MAC"

// refuse records that the tap would not lock to src, a MAC it tried again
// when again; the caller holds t.mu.
func (t *bridgedTunnel) refuse(src []byte, again bool) {
	t.lastRefused, t.lastRefusedAt = [6]byte(src), time.Now()
	if !again {
		t.refused++
	}
}

func (t *bridgedTunnel) holds(a netip.Addr) bool {
	for _, m := range t.mine {
		if m == a {
			return true
		}
	}
	return false
}

// hold records a as this tunnel's, unless the host or another tunnel has
// it (the bridge table then drops the frame's claim) or the tunnel holds
// all it may; the caller holds t.mu.
func (t *bridgedTunnel) hold(a netip.Addr) {
	n := &t.n4
	if a.Is6() {
		n = &t.n6
	}
	if *n >= maxHeldPerFamily {
		t.warnDrop(whyHeldAll, a)
		return
	}
	if !t.ports.take(a, t) {
		return
	}
	if err := holdAddr(t.index, a); err != nil {
		t.ports.release(t, []netip.Addr{a})
		t.ports.log.Warn("port security: cannot record the client's address", "device", t.Name(), "address", a, "err", err)
		return
	}
	*n++
	t.mine = append(t.mine, a)
	t.ports.log.Debug("bridged tunnel holds an address", "device", t.Name(), "address", a, "key", t.key)
}

// whyHeldAll is a constant, not formatted, as it is the throttle's key:
// hold meets it on every frame once the tunnel holds all it may.
const whyHeldAll = "the tunnel holds all the addresses of this family a tunnel may: more are not protected from other tunnels"

func (t *bridgedTunnel) warnDrop(why string, a netip.Addr) {
	if n, ok := t.ports.warn.Allow(why); ok {
		t.ports.log.Warn("bridged tunnel: not passing the client's frame, or not all of its claim", "device", t.Name(), "why", why, "address", a, "dropped_since_last", n)
	}
}

// Where an IPv6 packet is in its original, for a fragment (RFC 8200 4.5).
const (
	unfragmented  = iota
	firstFragment // at offset 0; an atomic fragment too
	laterFragment
)

// ip6Upper walks the extension headers of the IPv6 packet p (its payload
// length bounds it) as the kernel's ipv6_find_hdr does for nftables, to
// the upper-layer header: its protocol and offset in p, and where p is in
// its original. ok is false when the headers run past p's end. A later
// fragment's upper-layer header is in the first: it reports the fragment
// header's next header, at the fragment's data.
func ip6Upper(p []byte) (proto byte, off, frag int, ok bool) {
	if n := 40 + int(binary.BigEndian.Uint16(p[4:])); n < len(p) {
		p = p[:n]
	}
	proto, off = p[6], 40
	for {
		var n int
		switch proto {
		case ip6HopByHop, ip6Routing, ip6DestOpts:
			if off+2 > len(p) {
				return proto, off, frag, false
			}
			n = (int(p[off+1]) + 1) * 8
		case ip6Auth:
			if off+2 > len(p) {
				return proto, off, frag, false
			}
			n = (int(p[off+1]) + 2) * 4
		case ip6Fragment:
			n = 8
			if off+n > len(p) {
				return proto, off, frag, false
			}
			frag = firstFragment
			if binary.BigEndian.Uint16(p[off+2:])&^7 != 0 {
				return p[off], off + n, laterFragment, true
			}
		default:
			return proto, off, frag, true
		}
		if off+n > len(p) {
			return proto, off, frag, false
		}
		proto, off = p[off], off+n
	}
}

// IPv6 extension headers (RFC 8200, 4302).
const (
	ip6HopByHop = 0
	ip6Routing  = 43
	ip6Fragment = 44
	ip6Auth     = 51
	ip6DestOpts = 60
)

// minUpperInFirst is how much of the upper-layer header a first fragment
// must hold for the bridge table's rules: the ports of UDP, ICMPv6's type.
const minUpperInFirst = 8

// ip6Unreadable says why the bridge table cannot judge the IPv6 frame f,
// or is "" when it can. nftables finds the upper-layer header past
// extension headers as receivers do, but only within the frame: a first
// fragment whose header chain, or upper-layer header, goes on in the
// second matches no rule, and the second carries the rest, a router
// advertisement say (RFC 7113); RFC 7112 lets no first fragment do that.
// Neighbour discovery is never fragmented (RFC 6980), so a fragment that
// is one is dropped too. A later fragment passes: without its first, no
// receiver reassembles it.
func ip6Unreadable(f []byte) string {
	p := f[14:]
	if binary.BigEndian.Uint16(f[12:]) != etherIPv6 || len(p) < 40 {
		return ""
	}
	// Past the payload length is Ethernet padding, which receivers cut
	// off: it must not make a short first fragment look whole.
	if n := 40 + int(binary.BigEndian.Uint16(p[4:])); n < len(p) {
		p = p[:n]
	}
	switch p[6] {
	case ip6HopByHop, ip6Routing, ip6Fragment, ip6Auth, ip6DestOpts:
	default:
		return "" // no extension header: nothing to walk
	}
	proto, off, frag, ok := ip6Upper(p)
	switch {
	case frag == laterFragment:
		return ""
	case !ok:
		return "an IPv6 packet whose extension headers run past its end"
	case frag == firstFragment && len(p)-off < minUpperInFirst:
		return "an IPv6 first fragment without its upper-layer header (RFC 7112): no rule could read it"
	case frag == firstFragment && proto == icmpv6 && p[off] >= icmpv6RouterSol && p[off] <= icmpv6Redirect:
		return "a fragment of a neighbour discovery message (RFC 6980)"
	}
	return ""
}

const (
	ipProtoUDP     = 17
	dhcpServerPort = 67
)

const whyDHCPFragment = "a fragmented DHCPv4 request: no client fragments one, and the bridge table could not read its chaddr"

// dhcpFragment reports whether f is the first fragment of an IPv4 UDP
// datagram to the DHCP server's port. The bridge table reads a request's
// chaddr in the frame, not in the datagram the server reassembles: a
// first fragment ending before it would match no rule, and the second
// carry another MAC's. Without its first, no later fragment is
// reassembled, and clients send requests whole (RFC 2131 2: 576 bytes).
func dhcpFragment(f []byte) bool {
	p := f[14:]
	if binary.BigEndian.Uint16(f[12:]) != etherIPv4 || len(p) < 20 || p[0]>>4 != 4 || p[9] != ipProtoUDP {
		return false
	}
	frag := binary.BigEndian.Uint16(p[6:])
	hl := int(p[0]&0x0f) * 4
	if frag&0x2000 == 0 || frag&0x1fff != 0 || len(p) < hl+4 || hl < 20 {
		return false // whole, or a later fragment, or no port to read
	}
	return binary.BigEndian.Uint16(p[hl+2:]) == dhcpServerPort
}

// foreignLinkAddr reports whether f, from the tunnel's MAC, gives its
// sender another link-layer address than mac: an ARP sender hardware
// address, or a source or target link-layer address option of a router
// or neighbour solicitation or a neighbour advertisement. Receivers take
// that address for the claimed IP address, not the frame's source: the
// client could have the LAN's traffic for its addresses sent to another
// station, or to every port (a broadcast address).
func foreignLinkAddr(f []byte, mac [6]byte) bool {
	p := f[14:]
	switch binary.BigEndian.Uint16(f[12:]) {
	case etherARP:
		return len(p) >= 14 && p[4] == 6 && [6]byte(p[8:14]) != mac
	case etherIPv6:
		if len(p) < 40 {
			return false
		}
		proto, off, frag, ok := ip6Upper(p)
		if !ok || frag == laterFragment || proto != icmpv6 || off >= len(p) {
			return false
		}
		opt := off + 24 // past a solicitation's or advertisement's target
		switch p[off] {
		case icmpv6RouterSol:
			opt = off + 8
		case icmpv6NeighSol, icmpv6NeighAdv:
		default:
			return false
		}
		for opt+2 <= len(p) {
			n := int(p[opt+1]) * 8
			if n == 0 || opt+n > len(p) {
				return false // receivers drop the message
			}
			if (p[opt] == ndOptSourceLinkAddr || p[opt] == ndOptTargetLinkAddr) && n >= 8 && [6]byte(p[opt+2:opt+8]) != mac {
				return true
			}
			opt += n
		}
	}
	return false
}

// Neighbour discovery's link-layer address options (RFC 4861 4.6.1).
const (
	ndOptSourceLinkAddr = 1
	ndOptTargetLinkAddr = 2
)

// claimedAddr is the address a frame claims: an IPv4 or IPv6 source, an
// ARP sender, a neighbour advertisement's target (past any extension
// headers, as the bridge table finds it). Unspecified and multicast
// addresses claim nothing.
func claimedAddr(f []byte) (netip.Addr, bool) {
	p := f[14:]
	var a netip.Addr
	switch binary.BigEndian.Uint16(f[12:]) {
	case etherIPv4:
		if len(p) < 20 || p[0]>>4 != 4 {
			return a, false
		}
		a = netip.AddrFrom4([4]byte(p[12:16]))
	case etherARP:
		if len(p) < 18 || binary.BigEndian.Uint16(p[2:]) != etherIPv4 || p[4] != 6 || p[5] != 4 {
			return a, false
		}
		a = netip.AddrFrom4([4]byte(p[14:18]))
	case etherIPv6:
		if len(p) < 40 || p[0]>>4 != 6 {
			return a, false
		}
		a = netip.AddrFrom16([16]byte(p[8:24]))
		if proto, off, frag, ok := ip6Upper(p); ok && frag != laterFragment && proto == icmpv6 &&
			len(p) >= off+24 && p[off] == icmpv6NeighAdv {
			a = netip.AddrFrom16([16]byte(p[off+8 : off+24]))
		}
	default:
		return a, false
	}
	if a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return a, false
	}
	return a, true
}

// Close logs what port security dropped, reverts the tap's changes (its
// chain, its place on the bridge), frees its addresses, and closes it.
func (t *bridgedTunnel) Close() error {
	t.mu.Lock()
	t.closed = true
	mine := t.mine
	t.mu.Unlock()
	t.once.Do(t.logDrops)
	err := t.undo.Revert()
	t.ports.release(t, mine)
	t.ports.releaseMAC(t)
	if cerr := t.Tun.Close(); err == nil {
		err = cerr
	}
	return err
}

// logDrops logs the tap's drop counters, before its chain goes.
func (t *bridgedTunnel) logDrops() {
	if t.index == 0 {
		return
	}
	counts, err := portCounters(t.index)
	if err != nil {
		t.ports.log.Debug("port security: cannot read the tap's counters", "device", t.Name(), "err", err)
		return
	}
	attrs := []any{"device", t.Name(), "key", t.key}
	var total uint64
	for _, why := range []string{dropOtherMAC, dropDHCPChaddr, dropRouterAdvert, dropRedirect, dropRedirect4, dropQuery, dropDHCPv4Server, dropDHCPv6Server,
		dropARPHost, dropARPHeld, dropNAHost, dropNAHeld, dropSolHost, dropSolHeld, dropSrcHost, dropSrcHeld} {
		if n := counts[why]; n > 0 {
			attrs = append(attrs, strings.ReplaceAll(why, " ", "_"), n)
			total += n
		}
	}
	if total > 0 {
		t.ports.log.Info("bridged tunnel down: port security dropped frames from its client", append(attrs, "dropped", total)...)
	}
}

// Config implements relay.Tunnel: a bridged tap has no addresses of the
// gateway's to hand out; the LAN's DHCP server and routers give them.
func (t *bridgedTunnel) Config() relay.TunnelConfig {
	return relay.TunnelConfig{Device: t.Name(), MTU: t.LinkMTU()}
}

// Status implements relay.Tunnel.
func (t *bridgedTunnel) Status() string { return bridgedStatus(t.Name(), t.ports.bridge, t.LinkMTU()) }

// bridgedStatus is what a stock client's session shows for a bridged tap.
func bridgedStatus(dev, bridge string, mtu int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "sshvpn: tunnel up on the gateway's %s (MTU %d), a port of its bridge %s: your tap is on the gateway's LAN.\n", dev, mtu, bridge)
	// accept_ra before up: the answer to the solicitation the tap sends as
	// it comes up is otherwise ignored on a host that forwards, and SLAAC
	// waits for the router's next unsolicited advertisement.
	b.WriteString("  on your side, as root, in one shell:\n")
	fmt.Fprintf(&b, "    %s\n", relay.ClientDeviceLine(relay.Ethernet))
	b.WriteString("    sysctl -w net.ipv6.conf.$dev.accept_ra=2   # IPv6 from the LAN's routers (SLAAC)\n")
	b.WriteString("    ip link set $dev up\n")
	b.WriteString("    udhcpc -i $dev   # IPv4 from the LAN's DHCP server (or: dhclient $dev)\n")
	b.WriteString("  The gateway passes frames from your tap's first MAC only, and no router advertisements or DHCP server replies from you.\n")
	return b.String()
}
