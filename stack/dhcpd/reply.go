package dhcpd

import (
	"encoding/binary"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/insomniacslk/dhcp/rfc1035label"
)

// Reply is what to send back: Payload is the DHCP message (the UDP payload
// from port 67 to port 68, with the source address Config.ServerID) and
// Dst the IPv4 destination, chosen as RFC 2131 4.1 says (see destination).
// The Ethernet destination follows from Dst on a segment with one client:
// the broadcast MAC for 255.255.255.255, the client's MAC otherwise.
type Reply struct {
	Payload []byte
	Dst     netip.Addr
}

// broadcastAddr is the limited broadcast, 255.255.255.255.
var broadcastAddr = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// options holds the option values of a Config, encoded once in New: a reply
// copies the slices into its map and never changes them.
type options struct {
	params    dhcpv4.Options // 1, 3, 6, 15, 119, 26, 121: the client's configuration
	serverID  []byte         // 54
	leaseTime []byte         // 51
	renewal   []byte         // 58, T1: half the lease
	rebinding []byte         // 59, T2: seven eighths of the lease
	yiaddr    net.IP
}

func newOptions(cfg Config) options {
	o := options{params: dhcpv4.Options{}}
	o.params.Update(dhcpv4.Option{Code: dhcpv4.OptionSubnetMask, Value: dhcpv4.IPMask(net.CIDRMask(cfg.Lease.Bits(), 32))})
	o.params.Update(dhcpv4.OptRouter(cfg.Router.AsSlice()))
	if len(cfg.DNS) > 0 {
		dns := make([]net.IP, len(cfg.DNS))
		for i, a := range cfg.DNS {
			dns[i] = a.AsSlice()
		}
		o.params.Update(dhcpv4.OptDNS(dns...))
	}
	if len(cfg.Domains) > 0 {
		o.params.Update(dhcpv4.OptDomainName(cfg.Domains[0]))
		o.params.Update(dhcpv4.OptDomainSearch(&rfc1035label.Labels{Labels: cfg.Domains}))
	}
	if cfg.MTU > 0 {
		o.params[dhcpv4.OptionInterfaceMTU.Code()] = binary.BigEndian.AppendUint16(nil, uint16(cfg.MTU))
	}
	if len(cfg.Routes) > 0 {
		o.params[dhcpv4.OptionClasslessStaticRoute.Code()] = classlessRoutes(cfg.Routes, cfg.Router)
	}
	o.serverID = cfg.ServerID.AsSlice()
	secs := uint64(cfg.LeaseTime / time.Second)
	o.leaseTime = binary.BigEndian.AppendUint32(nil, uint32(secs))
	o.renewal = binary.BigEndian.AppendUint32(nil, uint32(secs/2))
	o.rebinding = binary.BigEndian.AppendUint32(nil, uint32(secs*7/8))
	o.yiaddr = cfg.Lease.Addr().AsSlice()
	return o
}

// classlessRoutes encodes option 121 (RFC 3442 section 3): per route its
// prefix length, the significant octets of the network, and the router.
func classlessRoutes(routes []netip.Prefix, router netip.Addr) []byte {
	var b []byte
	r4 := router.As4()
	for _, p := range routes {
		n := p.Masked().Addr().As4()
		b = append(b, byte(p.Bits()))
		b = append(b, n[:(p.Bits()+7)/8]...)
		b = append(b, r4[:]...)
	}
	return b
}

// grant builds an OFFER or ACK of the lease, with every option the client
// configures itself from; RFC 2131 4.3.1 and table 3.
func (s *Server) grant(m *message, typ dhcpv4.MessageType) Reply {
	d := s.header(m, typ, len(s.opts.params)+6)
	d.YourIPAddr = s.opts.yiaddr
	for code, v := range s.opts.params {
		d.Options[code] = v
	}
	d.Options[dhcpv4.OptionIPAddressLeaseTime.Code()] = s.opts.leaseTime
	d.Options[dhcpv4.OptionRenewTimeValue.Code()] = s.opts.renewal
	d.Options[dhcpv4.OptionRebindingTimeValue.Code()] = s.opts.rebinding
	return s.send(m, d)
}

// informAck builds the ACK to an INFORM: the configuration without a lease,
// yiaddr 0 (RFC 2131 4.3.5).
func (s *Server) informAck(m *message) Reply {
	d := s.header(m, dhcpv4.MessageTypeAck, len(s.opts.params)+3)
	for code, v := range s.opts.params {
		d.Options[code] = v
	}
	return s.send(m, d)
}

// nak builds a NAK: message type, server id and the client identifier, as
// RFC 2131 table 3 allows and RFC 6842 requires; nothing else.
func (s *Server) nak(m *message) Reply {
	return s.send(m, s.header(m, dhcpv4.MessageTypeNak, 3))
}

// header starts a reply to m of type typ: the fields RFC 2131 table 3 copies
// from the request (xid, flags, chaddr), giaddr and ciaddr 0, and options
// 53, 54 and 61 (RFC 6842: the client identifier, unchanged, in every reply).
// n is how many options the reply will hold.
func (s *Server) header(m *message, typ dhcpv4.MessageType, n int) *dhcpv4.DHCPv4 {
	d := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootReply,
		HWType:        m.HWType,
		TransactionID: m.TransactionID,
		Flags:         m.Flags,
		ClientHWAddr:  m.ClientHWAddr,
		Options:       make(dhcpv4.Options, n),
	}
	d.Options[dhcpv4.OptionDHCPMessageType.Code()] = []byte{byte(typ)}
	d.Options[dhcpv4.OptionServerIdentifier.Code()] = s.opts.serverID
	if id, ok := m.Options[dhcpv4.OptionClientIdentifier.Code()]; ok {
		d.Options[dhcpv4.OptionClientIdentifier.Code()] = id
	}
	return d
}

// send encodes d and addresses it.
func (s *Server) send(m *message, d *dhcpv4.DHCPv4) Reply {
	dst := destination(m, dhcpv4.MessageType(d.Options[dhcpv4.OptionDHCPMessageType.Code()][0]), fieldAddr(d.YourIPAddr))
	return Reply{Payload: d.ToBytes(), Dst: dst}
}

// destination returns where a reply of type typ to m goes, by RFC 2131 4.1
// for giaddr 0 (Handle ignores relayed messages):
//
//   - a NAK is broadcast;
//   - ciaddr set (RENEWING, REBINDING, INFORM): unicast to ciaddr;
//   - the broadcast flag set: broadcast, the client cannot take unicast
//     before it has its address;
//   - otherwise unicast to yiaddr, at chaddr without ARP.
//
// A chaddr that is no unicast Ethernet address cannot be sent to, so
// replies that would go to yiaddr at it are broadcast instead (RFC 1542
// 3.1.1).
func destination(m *message, typ dhcpv4.MessageType, yiaddr netip.Addr) netip.Addr {
	switch {
	case typ == dhcpv4.MessageTypeNak:
		return broadcastAddr
	case m.ciaddr.IsValid():
		return m.ciaddr
	case m.IsBroadcast() || !unicastChaddr(m) || !yiaddr.IsValid():
		return broadcastAddr
	}
	return yiaddr
}

// unicastChaddr says whether chaddr is an Ethernet unicast address.
func unicastChaddr(m *message) bool {
	mac := m.ClientHWAddr
	return m.HWType == iana.HWTypeEthernet && len(mac) == 6 && mac[0]&1 == 0 && [6]byte(mac) != [6]byte{}
}

// sizeOfLargestReply is the size of an ACK with a client identifier of the
// usual 7 bytes (type and MAC): New refuses a Config whose options push it
// past what every client accepts.
func (s *Server) sizeOfLargestReply() int {
	req := &dhcpv4.DHCPv4{
		OpCode:       dhcpv4.OpcodeBootRequest,
		HWType:       iana.HWTypeEthernet,
		ClientHWAddr: net.HardwareAddr{2, 0, 0, 0, 0, 1},
		Options:      dhcpv4.Options{dhcpv4.OptionClientIdentifier.Code(): {1, 2, 0, 0, 0, 0, 1}},
	}
	return len(s.grant(&message{DHCPv4: req}, dhcpv4.MessageTypeAck).Payload)
}
