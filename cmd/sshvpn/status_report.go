package main

import (
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sshvpn/sshvpn/proxy"
	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/gateway"
	"github.com/sshvpn/sshvpn/relay/reconnect"
	"github.com/sshvpn/sshvpn/stack"
	"github.com/sshvpn/sshvpn/stack/dnsproxy"
	"github.com/sshvpn/sshvpn/status"
)

// gatewayStatus is what serve's status report is made of.
type gatewayStatus struct {
	srv     *gateway.Server
	listen  string
	hostKey string
	backend string
	dns     func() (dnsproxy.Stats, bool) // netstack's resolver's; nil on kernel
}

func (g *gatewayStatus) report() status.Report {
	s := g.srv.Status()
	s.Listen, s.HostKey, s.Backend = g.listen, g.hostKey, g.backend
	for i := range s.Connections {
		for j := range s.Connections[i].Tunnels {
			s.Connections[i].Tunnels[j].Backend = g.backend
		}
	}
	if d, ok := dnsStats(g.dns); ok {
		s.DNS = &status.DNS{Queries: d.Queries, CacheHits: d.CacheHits, CacheEntries: d.CacheEntries, CacheBytes: d.CacheBytes,
			Refused: d.Refused, Malformed: d.Malformed, Dropped: d.Dropped, UpstreamFailures: d.UpstreamFailures}
	}
	return status.Report{Role: "gateway", Gateway: &s}
}

func dnsStats(f func() (dnsproxy.Stats, bool)) (dnsproxy.Stats, bool) {
	if f == nil {
		return dnsproxy.Stats{}, false
	}
	return f()
}

// clientStatus is what connect's status report is made of: the
// reconnecting client's state, and what connect itself set up around it.
type clientStatus struct {
	client  *reconnect.Client
	server  string // user@host:port
	backend string
	mode    relay.Mode
	rtt     atomic.Int64 // the last keepalive's round trip

	mu     sync.Mutex
	device func() string // the local device's name, once there is one
	// flows are the device's flow terminator's counters (--transport
	// flow), false without one.
	flows   func() (stack.FlowStats, bool)
	addrs   []netip.Prefix
	routes  []netip.Prefix
	proxies []proxyListener
}

func newClientStatus(user, host string, port int, backend string, mode relay.Mode) *clientStatus {
	return &clientStatus{server: user + "@" + net.JoinHostPort(host, strconv.Itoa(port)), backend: backend, mode: mode}
}

// keptAlive is keepalive.Watch's round-trip callback.
func (cs *clientStatus) keptAlive(d time.Duration) { cs.rtt.Store(int64(d)) }

func (cs *clientStatus) setProxies(ls []proxyListener) {
	cs.mu.Lock()
	cs.proxies = ls
	cs.mu.Unlock()
}

func (cs *clientStatus) report() status.Report {
	st := cs.client.State()
	c := &status.Client{
		State: st.Phase, Server: cs.server, LastError: st.LastError, NextTry: st.NextTry,
		Reconnects: st.Reconnects, PeerVersion: st.PeerVersion, RTT: status.Duration(cs.rtt.Load()),
		Totals: status.Traffic{In: counters(st.In), Out: counters(st.Out)},
	}
	if st.Phase == reconnect.Up {
		c.Since = st.Since
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	var cfg relay.TunnelConfig
	if st.Config != nil {
		cfg = *st.Config
	}
	c.Routes = append(slices.Clone(cfg.Routes), cs.routes...)
	c.DNS = cfg.DNS
	if st.Tunnel {
		t := &status.Tunnel{Channel: st.Channel, Mode: cs.mode.String(), Backend: cs.backend, Device: cs.backend,
			Addresses: cfg.Addresses, Since: st.Since, LastReceived: st.In.Last, In: c.Totals.In, Out: c.Totals.Out}
		if len(cs.addrs) > 0 {
			t.Addresses = cs.addrs
		}
		if cs.device != nil {
			t.Device = cs.device()
		}
		if fs, ok := flowStats(cs.flows); ok {
			t.Flows = &status.Usage{Used: int64(fs.Active), Limit: int64(fs.MaxFlows), Refused: fs.AtLimit}
		}
		c.Tunnel = t
	}
	for _, l := range cs.proxies {
		s := l.stats.Snapshot()
		c.Proxies = append(c.Proxies, status.Proxy{Kind: l.kind, Listen: l.ln.Addr().String(), Target: l.target,
			Conns: status.Usage{Used: s.Active, Limit: proxy.DefaultMaxConns, Refused: s.Refused}})
	}
	return status.Report{Role: "client", Client: c}
}

func flowStats(f func() (stack.FlowStats, bool)) (stack.FlowStats, bool) {
	if f == nil {
		return stack.FlowStats{}, false
	}
	return f()
}

func counters(s relay.Snapshot) status.Counters {
	return status.Counters{Packets: s.Packets, Bytes: s.Bytes, Drops: s.Drops}
}
