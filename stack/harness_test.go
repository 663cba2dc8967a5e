package stack

import (
	"context"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/stack/egress"
)

// peer is the far side of a tunnel in tests: an ordinary gVisor stack, as
// a client's kernel would be, joined to the tunnel's Device by two pumps
// that move whole batches, as relay.Pump does.
type peer struct {
	s     *stack.Stack
	ep    *endpoint
	stats Stats
	wg    sync.WaitGroup
	addrs []netip.Prefix
	once  sync.Once
}

func newPeer(t *testing.T, tun relay.Tunnel) *peer {
	t.Helper()
	return newPeerOver(t, tun, nil)
}

// newPeerOver is newPeer with the tunnel's packets for the peer crossing
// link, when it is not nil, as a slow path would carry them.
func newPeerOver(t *testing.T, tun relay.Tunnel, link *slowLink) *peer {
	t.Helper()
	p := &peer{addrs: tun.Config().Addresses}
	p.ep = newEndpoint(uint32(tun.MTU()), 0, &p.stats)
	p.s = stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
	})
	sack := tcpip.TCPSACKEnabled(true) // as a Linux client's
	if err := p.s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); err != nil {
		t.Fatalf("peer SACK: %s", err)
	}
	if err := p.s.CreateNIC(nicID, p.ep); err != nil {
		t.Fatalf("peer NIC: %s", err)
	}
	for _, a := range p.addrs {
		proto := ipv4.ProtocolNumber
		if a.Addr().Is6() {
			proto = ipv6.ProtocolNumber
		}
		pa := tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: tcpip.AddressWithPrefix{Address: addrTo(a.Addr()), PrefixLen: a.Bits()}}
		if err := p.s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
			t.Fatalf("peer address %s: %s", a, err)
		}
	}
	p.s.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: nicID},
		{Destination: header.IPv6EmptySubnet, NIC: nicID},
	})
	p.wg.Add(2)
	if link != nil {
		go func() {
			defer p.wg.Done()
			link.run(tun.Read, p.ep.writeBatch)
		}()
	} else {
		go p.pump(tun.Read, p.ep.writeBatch)
	}
	go p.pump(p.ep.readBatch, tun.Write)
	t.Cleanup(func() { p.close(tun) })
	return p
}

type readFunc func(bufs [][]byte, sizes []int, offset int) (int, error)
type writeFunc func(bufs [][]byte, offset int) (int, error)

func (p *peer) pump(read readFunc, write writeFunc) {
	defer p.wg.Done()
	bufs := make([][]byte, batchSize)
	pkts := make([][]byte, batchSize)
	sizes := make([]int, batchSize)
	for i := range bufs {
		bufs[i] = make([]byte, relay.Headroom+65535)
	}
	for {
		n, err := read(bufs, sizes, relay.Headroom)
		if err != nil {
			return
		}
		for i := range n {
			pkts[i] = bufs[i][:relay.Headroom+sizes[i]]
		}
		if _, err := write(pkts[:n], relay.Headroom); err != nil {
			return
		}
	}
}

func (p *peer) close(tun relay.Tunnel) {
	p.once.Do(func() {
		tun.Close()
		p.ep.Close()
		p.wg.Wait()
		p.s.Destroy()
	})
}

// dialTCP opens a TCP connection from the peer to dst.
func (p *peer) dialTCP(t *testing.T, dst netip.AddrPort) (*gonet.TCPConn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return gonet.DialContextTCP(ctx, p.s, fullAddr(dst), proto(dst.Addr()))
}

func (p *peer) dialUDP(t *testing.T, dst netip.AddrPort) *gonet.UDPConn {
	t.Helper()
	fa := fullAddr(dst)
	c, err := gonet.DialUDP(p.s, nil, &fa, proto(dst.Addr()))
	if err != nil {
		t.Fatalf("peer udp to %s: %v", dst, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func fullAddr(a netip.AddrPort) tcpip.FullAddress {
	return tcpip.FullAddress{NIC: nicID, Addr: addrTo(a.Addr()), Port: a.Port()}
}

func proto(a netip.Addr) tcpip.NetworkProtocolNumber {
	if a.Is4() {
		return ipv4.ProtocolNumber
	}
	return ipv6.ProtocolNumber
}

// newGateway builds a Gateway whose policy opens loopback when allow
// lists rules, with short UDP timeouts so tests see flows end.
func newGateway(t *testing.T, rules ...string) *Gateway {
	t.Helper()
	return newGatewayWith(t, Config{}, rules...)
}

// newGatewayWith is newGateway from cfg, whose rules and limits it sets.
func newGatewayWith(t *testing.T, cfg Config, rules ...string) *Gateway {
	t.Helper()
	var rs []egress.Rule
	for _, s := range rules {
		r, err := egress.ParseRule(s, true)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	cfg.Rules = rs
	if cfg.MTU == 0 {
		cfg.MTU = 1500 // a stock client's tun, as the tests' peers have
	}
	cfg.Limits = Limits{UDPIdle: 300 * time.Millisecond, DNSIdle: 100 * time.Millisecond, DialTimeout: 2 * time.Second}
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func open(t *testing.T, g *Gateway, key string) relay.Tunnel {
	t.Helper()
	tun, err := g.Open(context.Background(), relay.TunnelRequest{Mode: relay.PointToPoint, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tun.Close() })
	return tun
}

// gw4 and gw6 are the default gateway addresses, which stand for the
// host's loopback.
var (
	gw4 = netip.MustParseAddr("100.77.0.1")
	gw6 = netip.MustParseAddr("fd73:7368:7670::1")
)

// settleGoroutines waits for the goroutine count to come back to base, for
// gVisor's timers and our relays unwind asynchronously.
func settleGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d, want at most %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tcpListener serves on loopback: it reads to EOF (the client's half-
// close), answers what it read prefixed, and closes.
func tcpListener(t *testing.T, network, addr string) netip.AddrPort {
	t.Helper()
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("no %s loopback here: %v", network, err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				buf := make([]byte, 0, 1<<20)
				for {
					if len(buf) == cap(buf) {
						buf = append(buf, 0)[:len(buf)]
					}
					n, err := c.Read(buf[len(buf):cap(buf)])
					buf = buf[:len(buf)+n]
					if err != nil {
						break
					}
				}
				c.Write(append([]byte("got:"), buf...))
			}()
		}
	}()
	return l.Addr().(*net.TCPAddr).AddrPort()
}
