package metrics

import (
	"cmp"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/sshvpn/sshvpn/status"
)

// Write renders r in the text exposition format, version 0.0.4: the
// process's build and start, then the gateway's or the client's families.
// A Report without a Gateway, a Client or a DNS renders the families it
// has. Families and samples come out in the same order every time.
func Write(w io.Writer, r *status.Report) error {
	_, err := w.Write(render(r, buildInfo()))
	return err
}

// render is the exposition of r, for a binary built as b.
func render(r *status.Report, b build) []byte {
	if r == nil {
		r = &status.Report{}
	}
	var t text
	process(&t, r, b)
	if g := r.Gateway; g != nil {
		gateway(&t, g)
	}
	if c := r.Client; c != nil {
		client(&t, c)
	}
	return t.b
}

func process(t *text, r *status.Report, b build) {
	version := cmp.Or(r.Version, b.version, "unknown")
	t.family("sshvpn_build_info", gauge, "Always 1; the labels say which sshvpn runs: its version, VCS revision and Go release.")
	t.uint("sshvpn_build_info", 1, "version", version, "revision", b.revision, "goversion", b.goVersion)
	if !r.Started.IsZero() {
		t.family("sshvpn_start_time_seconds", gauge, "When the process started, in seconds since the Unix epoch.")
		t.float("sshvpn_start_time_seconds", unixSeconds(r.Started))
	}
}

func gateway(t *text, g *status.Gateway) {
	t.family("sshvpn_connections", gauge, "SSH connections logged in.")
	t.uint("sshvpn_connections", uint64(len(g.Connections)))
	t.family("sshvpn_handshaking", gauge, "SSH connections not yet logged in.")
	t.uint("sshvpn_handshaking", uint64(max(g.Handshaking, 0)))
	var tunnels []*status.Tunnel
	var forwards int64
	for i := range g.Connections {
		c := &g.Connections[i]
		forwards += c.Forwards.Used
		for j := range c.Tunnels {
			tunnels = append(tunnels, &c.Tunnels[j])
		}
	}
	tunnelCounts(t, tunnels)
	t.family("sshvpn_forwards", gauge, "Forwarded connections (ssh -L, -D, -W) open, over every SSH connection.")
	t.int("sshvpn_forwards", forwards)
	flows(t, tunnels, g.Backend == "netstack")
	traffic(t, &g.Totals, "Every tunnel's since the gateway started, departed tunnels' included.")
	byLabel(t, "sshvpn_limit_refused_total", "What a limit refused, by limit: connections, tunnels and forwards per key or connection, and the flows and memory of one client's stack (flows_per_client, memory_per_client).", "limit", g.Refused)
	byLabel(t, "sshvpn_auth_failures_total", "Logins refused, by reason.", "reason", g.AuthFailures)
	if g.DNS != nil {
		dns(t, g.DNS)
	}
}

// tunnelKey is what sshvpn_tunnels counts tunnels by.
type tunnelKey struct{ mode, channel, backend string }

func tunnelCounts(t *text, tunnels []*status.Tunnel) {
	n := map[tunnelKey]uint64{}
	for _, tu := range tunnels {
		n[tunnelKey{tu.Mode, tu.Channel, tu.Backend}]++
	}
	keys := slices.SortedFunc(maps.Keys(n), func(a, b tunnelKey) int {
		return cmp.Or(cmp.Compare(a.mode, b.mode), cmp.Compare(a.channel, b.channel), cmp.Compare(a.backend, b.backend))
	})
	t.family("sshvpn_tunnels", gauge, "Tunnels up, by mode, channel type and backend.")
	for _, k := range keys {
		t.uint("sshvpn_tunnels", n[k], "mode", k.mode, "channel", k.channel, "backend", k.backend)
	}
}

// flows writes the netstack's per-client limits summed over tunnels: when
// always, or when a tunnel has them.
func flows(t *text, tunnels []*status.Tunnel, always bool) {
	var flows, memory int64
	for _, tu := range tunnels {
		if tu.Flows != nil {
			flows += tu.Flows.Used
			always = true
		}
		if tu.Memory != nil {
			memory += tu.Memory.Used
			always = true
		}
	}
	if !always {
		return
	}
	t.family("sshvpn_flows", gauge, "Connections the userspace stack holds for the tunnels.")
	t.int("sshvpn_flows", flows)
	t.family("sshvpn_flow_memory_bytes", gauge, "Memory the userspace stack's connections buffer for the tunnels.")
	t.int("sshvpn_flow_memory_bytes", memory)
}

// traffic writes tunnel traffic totals; whose says whose they are.
func traffic(t *text, tr *status.Traffic, whose string) {
	t.family("sshvpn_tunnel_bytes_total", counter, "Tunnel bytes, in from the peer or out to it. "+whose)
	t.uint("sshvpn_tunnel_bytes_total", tr.In.Bytes, "direction", "in")
	t.uint("sshvpn_tunnel_bytes_total", tr.Out.Bytes, "direction", "out")
	t.family("sshvpn_tunnel_packets_total", counter, "Tunnel packets, in from the peer or out to it. "+whose)
	t.uint("sshvpn_tunnel_packets_total", tr.In.Packets, "direction", "in")
	t.uint("sshvpn_tunnel_packets_total", tr.Out.Packets, "direction", "out")
	t.family("sshvpn_tunnel_drops_total", counter, "Tunnel packets dropped, by direction and reason. "+whose)
	for _, d := range []struct {
		name string
		c    *status.Counters
	}{{"in", &tr.In}, {"out", &tr.Out}} {
		for _, reason := range slices.Sorted(maps.Keys(d.c.Drops)) {
			t.uint("sshvpn_tunnel_drops_total", d.c.Drops[reason], "direction", d.name, "reason", reason)
		}
	}
}

// byLabel writes a counter family of one sample per key of m.
func byLabel(t *text, name, help, label string, m map[string]uint64) {
	t.family(name, counter, help)
	for _, k := range slices.Sorted(maps.Keys(m)) {
		t.uint(name, m[k], label, k)
	}
}

func dns(t *text, d *status.DNS) {
	for _, m := range []struct {
		name, typ, help string
		v               uint64
	}{
		{"sshvpn_dns_queries_total", counter, "Queries the gateway's resolver answered or tried to.", d.Queries},
		{"sshvpn_dns_cache_hits_total", counter, "Queries answered from the resolver's cache.", d.CacheHits},
		{"sshvpn_dns_cache_entries", gauge, "Answers in the resolver's cache.", d.CacheEntries},
		{"sshvpn_dns_cache_bytes", gauge, "Memory the resolver's cache holds.", d.CacheBytes},
		{"sshvpn_dns_refused_total", counter, "Queries the resolver refused by policy.", d.Refused},
		{"sshvpn_dns_malformed_total", counter, "Queries the resolver could not parse.", d.Malformed},
		{"sshvpn_dns_dropped_total", counter, "Queries dropped unanswered at the resolver's limits.", d.Dropped},
		{"sshvpn_dns_upstream_failures_total", counter, "Lookups the upstream name servers failed.", d.UpstreamFailures},
	} {
		t.family(m.name, m.typ, m.help)
		t.uint(m.name, m.v)
	}
}

func client(t *text, c *status.Client) {
	up := uint64(0)
	if c.State == "up" {
		up = 1
	}
	t.family("sshvpn_client_up", gauge, "1 while the client's tunnel is up, 0 while it connects or reconnects.")
	t.uint("sshvpn_client_up", up)
	t.family("sshvpn_client_reconnects_total", counter, "Times the client connected again after losing its connection.")
	t.uint("sshvpn_client_reconnects_total", c.Reconnects)
	if c.RTT > 0 {
		t.family("sshvpn_client_rtt_seconds", gauge, "The last keepalive's round trip to the server.")
		t.float("sshvpn_client_rtt_seconds", time.Duration(c.RTT).Seconds())
	}
	var tunnels []*status.Tunnel
	if c.Tunnel != nil {
		tunnels = append(tunnels, c.Tunnel)
	}
	tunnelCounts(t, tunnels)
	flows(t, tunnels, false)
	traffic(t, &c.Totals, "The client's over every connection since it started.")
	proxies(t, c.Proxies)
}

func proxies(t *text, ps []status.Proxy) {
	if len(ps) == 0 {
		return
	}
	used, refused := map[string]uint64{}, map[string]uint64{}
	for _, p := range ps {
		used[p.Kind] += uint64(max(p.Conns.Used, 0))
		refused[p.Kind] += p.Conns.Refused
	}
	t.family("sshvpn_proxy_connections", gauge, "Connections the local proxies (-D, --http-proxy, -L) hold, by kind.")
	for _, k := range slices.Sorted(maps.Keys(used)) {
		t.uint("sshvpn_proxy_connections", used[k], "kind", k)
	}
	byLabel(t, "sshvpn_proxy_refused_total", "Connections the local proxies refused at their limit, by kind.", "kind", refused)
}

// unixSeconds is t in seconds since the epoch, to the nanosecond the float
// holds.
func unixSeconds(t time.Time) float64 {
	return float64(t.UnixNano()) / 1e9
}
