package stack

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/stack/dnsproxy"
	"github.com/sshvpn/sshvpn/stack/egress"
	"github.com/sshvpn/sshvpn/stack/segment"
)

// nicID is the one NIC of a client's stack.
const nicID tcpip.NICID = 1

// DialFunc opens the host socket a flow is re-originated from; addr is
// the destination as host:port. net.Dialer.DialContext is the default;
// tests inject one.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Limits bound what one client may hold, so that it cannot hurt the others
// or the host. A zero field takes its DefaultLimits value; a negative count
// means no limit.
type Limits struct {
	TCPInFlight    int // half-open TCP connections being dialled or handshaking
	TCPEstablished int // TCP connections relayed at once, each a host socket
	UDPFlows       int // UDP flows at once, each a host socket
	// ICMPInFlight bounds the echo requests waiting for their host's
	// reply; past it an echo is dropped, as a loaded router drops it.
	ICMPInFlight int
	UDPIdle      time.Duration // a UDP flow's idle timeout
	DNSIdle      time.Duration // the same for port 53
	DialTimeout  time.Duration // a host dial, and then the client's ACK of the SYN-ACK
	// Memory bounds the bytes one client's flows hold: their relay buffers,
	// its echoes in flight and what its TCP connections have queued in the
	// stack. A new flow or echo past it is refused; a client over it has its
	// largest TCP connections reset until it is under.
	Memory int64
}

// DefaultLimits are the limits a zero Limits field takes. Each count is
// far above what one person's machine opens (a browser holds a few hundred
// connections) and low enough that a hundred clients at their limits stay
// within one process's file descriptors and memory.
var DefaultLimits = Limits{
	TCPInFlight:    256,
	TCPEstablished: 4096,
	UDPFlows:       1024,
	ICMPInFlight:   64, // ping's one a second to 21 hosts that never answer (each waits pingTimeout)
	UDPIdle:        60 * time.Second,
	DNSIdle:        5 * time.Second,
	DialTimeout:    10 * time.Second,
	Memory:         256 << 20,
}

// withDefaults fills in zero fields.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.TCPInFlight, d.TCPInFlight)
	def(&l.TCPEstablished, d.TCPEstablished)
	def(&l.UDPFlows, d.UDPFlows)
	def(&l.ICMPInFlight, d.ICMPInFlight)
	defDur(&l.UDPIdle, d.UDPIdle)
	defDur(&l.DNSIdle, d.DNSIdle)
	defDur(&l.DialTimeout, d.DialTimeout)
	if l.Memory == 0 {
		l.Memory = d.Memory
	}
	if l.TCPInFlight < 0 {
		l.TCPInFlight = 1 << 20 // gVisor's forwarder needs a number
	}
	if l.ICMPInFlight < 0 || l.ICMPInFlight > maxICMPInFlight {
		l.ICMPInFlight = maxICMPInFlight
	}
	return l
}

// Stats are one client's counters. Gauges (TCPEstablished, UDPFlows) go
// up and down; the rest only up.
type Stats struct {
	PacketsIn, PacketsOut                   atomic.Uint64
	DropsNotIP, DropsQueueFull, DropsTooBig atomic.Uint64
	// DropsQueueDelay counts packets CoDel dropped from the outbound queue.
	DropsQueueDelay atomic.Uint64

	TCPEstablished, TCPInFlight                           atomic.Int64
	TCPInFlightFull                                       atomic.Uint64
	TCPDenied, TCPLimited, TCPDialFailed, TCPCreateFailed atomic.Uint64
	UDPFlows                                              atomic.Int64
	UDPDenied, UDPLimited, UDPDialFailed                  atomic.Uint64
	ICMPRequests, ICMPReplies, ICMPNoReply, ICMPDenied    atomic.Uint64
	// ICMPInFlight are the echoes waiting for a reply; ICMPInFlightFull
	// counts those dropped at Limits.ICMPInFlight.
	ICMPInFlight     atomic.Int64
	ICMPInFlightFull atomic.Uint64
	// MemoryLimited counts flows refused, MemoryResets connections reset,
	// for Limits.Memory.
	MemoryLimited, MemoryResets atomic.Uint64
	// SocketsLimited counts flows refused because the gateway's host
	// sockets, or the key's share of them, were spent (Config.HostSockets).
	SocketsLimited atomic.Uint64
	// L2 are an ethernet tunnel's segment's counters.
	L2 segment.Stats
}

// clientConfig is what one client's stack is built from.
type clientConfig struct {
	MTU      int
	QueueLen int
	Policy   *livePolicy // nil: the default policy alone
	Dial     DialFunc
	Limits   Limits
	Logger   *slog.Logger
	// Local are the gateway's virtual addresses: the stack owns them, and
	// flows to them are never dialled on the host's network.
	Local []netip.Prefix
	// Ping says whether echoes can be forwarded (nil: never).
	Ping *pingSockets
	// DNS, when set, answers on port 53 of DNSAddrs (which are in Local).
	DNS      *dnsproxy.Proxy
	DNSAddrs []netip.Addr
	// Key is the client's key; Sockets the gateway's budget of host
	// sockets, which its flows are charged to under Key (no bound when
	// nil).
	Key     string
	Sockets *hostSockets
	// pingTarget, when set, is where an echo to an address is sent
	// instead (tests: the client stack cannot send to loopback).
	pingTarget func(netip.Addr) netip.Addr
	// listenPing opens a ping socket (listenPing when nil; tests give
	// one whose host never answers).
	listenPing func(v6 bool) (pingConn, error)
	// pingTimeout is how long an echo waits for its reply (pingTimeout
	// when zero).
	pingTimeout time.Duration
}

// client is one tunnel's userspace stack: a gVisor stack with one
// promiscuous, spoofing NIC, so that it terminates flows to any
// destination, and the forwarders that re-originate them. It is the
// tunnel's relay.Device: Write takes the client's packets, Read gives the
// stack's.
type client struct {
	s      *stack.Stack
	ep     *endpoint
	policy *livePolicy
	dial   DialFunc
	limits Limits
	log    *slog.Logger
	local  []netip.Addr
	group  *group
	stats  Stats
	dns    *dnsproxy.Proxy // this client's share, or nil
	mem    memory
	// key is the client's key, which its flows' host sockets are charged
	// to in sockets, the gateway's budget.
	key     string
	sockets *hostSockets
	// ctx ends when Close begins: every host dial runs under it, so that
	// no teardown waits for a host that does not answer.
	ctx    context.Context
	cancel context.CancelFunc

	// datagramBufs are the UDP relays' buffers, reused: clearing a new
	// 128 KiB was the largest cost of a flow that lives for one datagram
	// and its port unreachable (a scan, or one DNS query).
	datagramBufs sync.Pool

	pings       pingers
	pingTarget  func(netip.Addr) netip.Addr
	listenPing  func(v6 bool) (pingConn, error)
	pingTimeout time.Duration

	warned    sync.Map // limit name -> struct{}: one warning per limit and client
	closeOnce sync.Once
}

var _ relay.Device = (*client)(nil)

func newClient(cfg clientConfig) (*client, error) {
	c := &client{
		policy: cfg.Policy,
		dial:   cfg.Dial,
		limits: cfg.Limits.withDefaults(),
		log:    cfg.Logger,
		group:  newGroup(),
		key:    cfg.Key,

		sockets: cfg.Sockets,

		pingTarget:  cfg.pingTarget,
		listenPing:  cfg.listenPing,
		pingTimeout: cfg.pingTimeout,
	}
	if c.sockets == nil {
		c.sockets = newHostSockets(-1)
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.datagramBufs.New = func() any { return new([65535]byte) }
	if c.listenPing == nil {
		c.listenPing = listenPing
	}
	if c.pingTimeout <= 0 {
		c.pingTimeout = pingTimeout
	}
	if c.policy == nil {
		c.policy = fixedPolicy(egress.New(egress.Config{}))
	}
	if c.dial == nil {
		var d net.Dialer
		c.dial = d.DialContext
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.ep = newEndpoint(uint32(cfg.MTU), cfg.QueueLen, &c.stats)
	var err error
	if c.s, err = newTunnelStack(c.ep); err != nil {
		c.cancel()
		return nil, err
	}
	if err := c.setup(cfg.Local); err != nil {
		c.cancel()
		c.s.Destroy()
		return nil, err
	}
	c.installTCP()
	c.installUDP()
	c.installICMP(cfg.Ping)
	if cfg.DNS != nil {
		c.dns = cfg.DNS.Share(c.admitDNS)
		if err := c.serveDNS(c.dns, cfg.DNSAddrs); err != nil {
			c.Close()
			return nil, err
		}
	}
	c.mem.init(c)
	return c, nil
}

// setup makes the NIC promiscuous (it accepts packets to any address) and
// spoofing (it answers from any), with catch-all routes back to the
// client, and gives it the gateway's own addresses.
func (c *client) setup(local []netip.Prefix) error {
	if err := terminateAll(c.s); err != nil {
		return err
	}
	for _, p := range local {
		proto := ipv4.ProtocolNumber
		if p.Addr().Is6() {
			proto = ipv6.ProtocolNumber
		}
		pa := tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: tcpip.AddressWithPrefix{
			Address: addrTo(p.Addr()), PrefixLen: p.Bits(),
		}}
		if err := c.s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
			return fmt.Errorf("stack: add gateway address %s: %s", p, err)
		}
		c.local = append(c.local, p.Addr())
	}
	return nil
}

// terminateAll makes s's NIC promiscuous (it accepts packets to any
// address) and spoofing (it answers from any), with catch-all routes back
// through it: a stack that terminates every flow, whatever its
// destination.
func terminateAll(s *stack.Stack) error {
	if err := s.SetPromiscuousMode(nicID, true); err != nil {
		return fmt.Errorf("stack: promiscuous NIC: %s", err)
	}
	if err := s.SetSpoofing(nicID, true); err != nil {
		return fmt.Errorf("stack: spoofing NIC: %s", err)
	}
	s.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: nicID},
		{Destination: header.IPv6EmptySubnet, NIC: nicID},
	})
	return nil
}

// isLocal reports whether a is one of the gateway's own addresses.
func (c *client) isLocal(a netip.Addr) bool {
	for _, l := range c.local {
		if l == a {
			return true
		}
	}
	return false
}

// warnLimit logs the first time a client hits one limit; Stats count every
// time.
func (c *client) warnLimit(what string, limit int) {
	if _, seen := c.warned.LoadOrStore(what, struct{}{}); !seen {
		c.log.Warn("client hit a per-client limit; further refusals are only counted", "limit", what, "max", limit)
	}
}

// Read implements relay.Device: the stack's packets for the client.
func (c *client) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return c.ep.readBatch(bufs, sizes, offset)
}

// Write implements relay.Device: the client's packets, one batch per call.
func (c *client) Write(bufs [][]byte, offset int) (int, error) {
	return c.ep.writeBatch(bufs, offset)
}

// BatchSize implements relay.Device.
func (c *client) BatchSize() int { return batchSize }

// MTU implements relay.Device.
func (c *client) MTU() int { return int(c.ep.MTU()) }

// Stats returns the client's counters.
func (c *client) Stats() *Stats { return &c.stats }

// Close implements relay.Device. It never waits for the network: it
// cancels every dial in flight first, then, since RemoveNIC closes no
// transport endpoint, aborts every flow (a reset to the client) and every
// handshake the client will not finish, closes their host sockets, waits
// for their goroutines, and only then destroys the stack.
func (c *client) Close() error {
	c.closeOnce.Do(func() {
		c.cancel()
		c.ep.Close() // unblocks Read and Write; removes the NIC, so no handshake starts
		if c.dns != nil {
			c.dns.Close()
		}
		c.group.close(c.abortEndpoints)
		c.s.Destroy()
		c.log.Debug("tunnel stack closed", "flows", &c.stats)
	})
	return nil
}

// abortEndpoints aborts every endpoint the stack holds. A handshake the
// forwarder started blocks its goroutine until the client answers it or
// about two minutes of SYN-ACK retransmits have passed; aborted, it
// returns at once.
func (c *client) abortEndpoints() {
	for _, e := range c.s.RegisteredEndpoints() {
		e.Abort()
	}
}

// LogValue implements slog.LogValuer: the counters that are not zero.
func (s *Stats) LogValue() slog.Value {
	var attrs []slog.Attr
	add := func(name string, v uint64) {
		if v != 0 {
			attrs = append(attrs, slog.Uint64(name, v))
		}
	}
	add("tcp_denied", s.TCPDenied.Load())
	add("tcp_limited", s.TCPLimited.Load())
	add("tcp_in_flight_full", s.TCPInFlightFull.Load())
	add("tcp_dial_failed", s.TCPDialFailed.Load())
	add("udp_denied", s.UDPDenied.Load())
	add("udp_limited", s.UDPLimited.Load())
	add("udp_dial_failed", s.UDPDialFailed.Load())
	add("icmp_requests", s.ICMPRequests.Load())
	add("icmp_no_reply", s.ICMPNoReply.Load())
	add("icmp_denied", s.ICMPDenied.Load())
	add("icmp_in_flight_full", s.ICMPInFlightFull.Load())
	add("memory_limited", s.MemoryLimited.Load())
	add("memory_resets", s.MemoryResets.Load())
	add("sockets_limited", s.SocketsLimited.Load())
	add("drops_queue_full", s.DropsQueueFull.Load())
	add("drops_queue_delay", s.DropsQueueDelay.Load())
	add("drops_not_ip", s.DropsNotIP.Load())
	add("drops_too_big", s.DropsTooBig.Load())
	if l2 := s.L2.LogValue(); len(l2.Group()) > 0 {
		attrs = append(attrs, slog.Attr{Key: "l2", Value: l2})
	}
	return slog.GroupValue(attrs...)
}
