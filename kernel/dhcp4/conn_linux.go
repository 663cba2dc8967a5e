//go:build linux

package dhcp4

import (
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The client speaks on a packet socket of its own, not on a UDP socket:
// it must send before the interface has an address, and receive the
// server's broadcast replies on an interface the host may route nothing
// to. nclient4 frames and parses the UDP and IP headers.

// dhcpClientFilter passes the socket only UDP datagrams to port 68, whole
// (no later fragment): the socket sits on the tunnel's tap, and without the
// filter every IPv4 packet of the tunnel would be copied to it and parsed.
// A SOCK_DGRAM packet socket's filter sees the packet from its IP header.
var dhcpClientFilter = []bpf.Instruction{
	bpf.LoadAbsolute{Off: 9, Size: 1}, // IP protocol
	bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.IPPROTO_UDP, SkipFalse: 6},
	bpf.LoadAbsolute{Off: 6, Size: 2}, // flags and fragment offset
	bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff, SkipTrue: 4},
	bpf.LoadMemShift{Off: 0},          // X = the IP header's length
	bpf.LoadIndirect{Off: 2, Size: 2}, // UDP destination port
	bpf.JumpIf{Cond: bpf.JumpEqual, Val: nclient4.ClientPort, SkipFalse: 1},
	bpf.RetConstant{Val: 0xffff},
	bpf.RetConstant{Val: 0},
}

// conn is the client's socket: what it sends goes from the leased address
// once there is one, as RFC 2131 wants of a renewal and a release (a
// server's kernel drops a unicast datagram from 0.0.0.0 as martian), and
// from 0.0.0.0 before.
type conn struct {
	raw *packet.Conn
	in  net.PacketConn // reads the datagrams to port 68, to any address
	src atomic.Pointer[net.UDPAddr]
}

var _ net.PacketConn = (*conn)(nil)

// listen opens the client's socket on ifi.
func listen(ifi *net.Interface) (*conn, error) {
	filter, err := bpf.Assemble(dhcpClientFilter)
	if err != nil {
		return nil, fmt.Errorf("DHCP client filter: %w", err)
	}
	raw, err := packet.Listen(ifi, packet.Datagram, unix.ETH_P_IP, &packet.Config{Filter: filter})
	if err != nil {
		return nil, fmt.Errorf("DHCP client on %s: %w", ifi.Name, err)
	}
	c := &conn{raw: raw, in: nclient4.NewBroadcastUDPConn(raw, &net.UDPAddr{Port: nclient4.ClientPort})}
	c.setSource(netip.Addr{})
	return c, nil
}

// setSource makes a the source of what the client sends; zero: 0.0.0.0.
func (c *conn) setSource(a netip.Addr) {
	ip := net.IPv4zero
	if a.IsValid() {
		ip = a.AsSlice()
	}
	c.src.Store(&net.UDPAddr{IP: ip, Port: nclient4.ClientPort})
}

func (c *conn) ReadFrom(b []byte) (int, net.Addr, error) { return c.in.ReadFrom(b) }

// WriteTo sends b to addr in a broadcast frame (nclient4 has no ARP; a
// host takes a broadcast frame for its own address), from the source set.
func (c *conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	return nclient4.NewBroadcastUDPConn(c.raw, c.src.Load()).WriteTo(b, addr)
}

func (c *conn) Close() error                       { return c.raw.Close() }
func (c *conn) LocalAddr() net.Addr                { return c.src.Load() }
func (c *conn) SetDeadline(t time.Time) error      { return c.raw.SetDeadline(t) }
func (c *conn) SetReadDeadline(t time.Time) error  { return c.raw.SetReadDeadline(t) }
func (c *conn) SetWriteDeadline(t time.Time) error { return c.raw.SetWriteDeadline(t) }
