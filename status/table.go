package status

import (
	"cmp"
	"fmt"
	"io"
	"strings"
	"time"
)

// WriteTable prints Reports for people, as wg show does: a heading line
// per process, connection and tunnel, then their fields indented. now is
// what "3s ago" counts from.
func WriteTable(w io.Writer, reports []Report, now time.Time) error {
	p := &printer{w: w, now: now}
	for i, r := range reports {
		if i > 0 {
			p.line(0, "")
		}
		switch {
		case r.Gateway != nil:
			p.gateway(&r)
		case r.Client != nil:
			p.client(&r)
		default:
			p.line(0, "%s: pid %d, sshvpn %s (no state)", cmp.Or(r.Role, "process"), r.PID, r.Version)
		}
	}
	return p.err
}

type printer struct {
	w   io.Writer
	now time.Time
	err error
}

// line writes one line indented by depth levels; field lines are
// "name: value".
func (p *printer) line(depth int, format string, args ...any) {
	if p.err != nil {
		return
	}
	_, p.err = fmt.Fprintf(p.w, "%s"+format+"\n", append([]any{strings.Repeat("  ", depth)}, args...)...)
}

func (p *printer) heading(r *Report) {
	up := ""
	if !r.Started.IsZero() {
		up = ", up " + Age(p.now.Sub(r.Started))
	}
	p.line(0, "%s: pid %d, sshvpn %s%s", r.Role, r.PID, r.Version, up)
}

func (p *printer) gateway(r *Report) {
	g := r.Gateway
	p.heading(r)
	p.line(1, "listen: %s", g.Listen)
	p.line(1, "host key: %s", g.HostKey)
	p.line(1, "backend: %s", g.Backend)
	p.line(1, "connections: %d (%d handshaking)", len(g.Connections), g.Handshaking)
	p.line(1, "transfer: %s", transfer(g.Totals))
	if len(g.Refused) > 0 {
		p.line(1, "refused: %s", byName(g.Refused))
	}
	if len(g.AuthFailures) > 0 {
		p.line(1, "auth failures: %s", byName(g.AuthFailures))
	}
	if d := g.DNS; d != nil {
		p.line(1, "dns: %d queries, %d cache hits, %d cached (%s), %d refused, %d malformed, %d dropped, %d upstream failures",
			d.Queries, d.CacheHits, d.CacheEntries, Bytes(d.CacheBytes), d.Refused, d.Malformed, d.Dropped, d.UpstreamFailures)
	}
	for i := range g.Connections {
		p.connection(&g.Connections[i])
	}
}

func (p *printer) connection(c *Connection) {
	p.line(0, "")
	p.line(1, "connection: %s@%s", c.User, c.Remote)
	key := c.Key
	if c.KeyComment != "" {
		key += " (" + c.KeyComment + ")"
	}
	p.line(2, "key: %s", key)
	p.line(2, "peer: %s", c.PeerVersion)
	p.line(2, "connected: %s", p.since(c.Since))
	p.line(2, "rtt: %s", RTT(c.RTT))
	p.line(2, "forwards: %s", limit(c.Forwards, count))
	for i := range c.Tunnels {
		p.tunnel(2, &c.Tunnels[i])
	}
}

// since says when with how long ago.
func (p *printer) since(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return fmt.Sprintf("%s (%s)", t.Local().Format(time.DateTime), Ago(t, p.now))
}

func (p *printer) tunnel(depth int, t *Tunnel) {
	p.line(0, "")
	p.line(depth, "tunnel: %s", t.Device)
	p.line(depth+1, "channel: %s", t.Channel)
	p.line(depth+1, "mode: %s (%s)", t.Mode, layer(t.Mode))
	p.line(depth+1, "backend: %s", t.Backend)
	p.line(depth+1, "addresses: %s", addresses(t))
	p.line(depth+1, "up: %s", p.since(t.Since))
	p.line(depth+1, "latest packet: %s", Ago(t.LastReceived, p.now))
	p.line(depth+1, "transfer: %s", transfer(Traffic{t.In, t.Out}))
	if d := drops(t.In, t.Out); d != "" {
		p.line(depth+1, "drops: %s", d)
	}
	if t.Flows != nil {
		p.line(depth+1, "flows: %s", limit(*t.Flows, count))
	}
	if t.Memory != nil {
		p.line(depth+1, "memory: %s", limit(*t.Memory, memory))
	}
}

func layer(mode string) string {
	switch mode {
	case "point-to-point":
		return "L3"
	case "ethernet":
		return "L2"
	}
	return "?"
}

// transfer says both directions as wg show does: "1.21 MiB received
// (900 packets), 3.40 MiB sent (1000 packets)".
func transfer(t Traffic) string {
	return fmt.Sprintf("%s received (%d packets), %s sent (%d packets)",
		Bytes(t.In.Bytes), t.In.Packets, Bytes(t.Out.Bytes), t.Out.Packets)
}

func drops(in, out Counters) string {
	var parts []string
	if len(in.Drops) > 0 {
		parts = append(parts, "received "+byName(in.Drops))
	}
	if len(out.Drops) > 0 {
		parts = append(parts, "sent "+byName(out.Drops))
	}
	return strings.Join(parts, "; ")
}

func (p *printer) client(r *Report) {
	c := r.Client
	p.heading(r)
	p.line(1, "server: %s", c.Server)
	state := c.State
	switch {
	case c.State == "reconnecting" && !c.NextTry.IsZero():
		state += fmt.Sprintf(", next try in %s", Age(c.NextTry.Sub(p.now)))
	case c.State == "up":
		state += " since " + p.since(c.Since)
	}
	p.line(1, "state: %s", state)
	if c.LastError != "" {
		p.line(1, "last error: %s", c.LastError)
	}
	p.line(1, "reconnects: %d", c.Reconnects)
	if c.PeerVersion != "" {
		p.line(1, "peer: %s", c.PeerVersion)
	}
	p.line(1, "rtt: %s", RTT(c.RTT))
	if len(c.Routes) > 0 {
		p.line(1, "routes: %s", joinAll(c.Routes, ", "))
	}
	if len(c.DNS) > 0 {
		p.line(1, "dns: %s", joinAll(c.DNS, ", "))
	}
	p.line(1, "transfer: %s", transfer(c.Totals))
	for _, x := range c.Proxies {
		target := ""
		if x.Target != "" {
			target = " → " + x.Target
		}
		p.line(1, "proxy: %s %s%s, connections %s", x.Kind, x.Listen, target, limit(x.Conns, count))
	}
	if c.Tunnel != nil {
		p.tunnel(1, c.Tunnel)
	}
}
