package status

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DumpColumns documents WriteDump's lines, for -h: one line per kind,
// its columns in order.
const DumpColumns = `Each line starts with its kind and the process's pid; then, tab-separated:
  gateway     listen host-key backend handshaking connections
      in-bytes in-packets out-bytes out-packets refused auth-failures
  connection  remote user key key-comment peer-version since rtt
      forwards-used forwards-limit
  tunnel      remote channel mode backend device addresses claimed
      leased since latest-packet in-bytes in-packets out-bytes
      out-packets in-drops out-drops flows-used flows-limit
      memory-used memory-limit
  client      server state since last-error next-try reconnects
      peer-version rtt routes dns in-bytes in-packets out-bytes
      out-packets

A tunnel's remote is its connection's (a client's: its server). Times are
Unix seconds (0: never), rtt is seconds, lists are comma-separated,
counts by reason are name=n,..., and an empty field is "-".
`

// WriteDump prints Reports for scripts, as wg show all dump does: one
// tab-separated line per gateway, connection, tunnel and client, as
// DumpColumns says.
func WriteDump(w io.Writer, reports []Report) error {
	d := &dumper{w: w}
	for _, r := range reports {
		pid := strconv.Itoa(r.PID)
		if g := r.Gateway; g != nil {
			d.row("gateway", pid, g.Listen, g.HostKey, g.Backend, g.Handshaking, len(g.Connections),
				g.Totals.In.Bytes, g.Totals.In.Packets, g.Totals.Out.Bytes, g.Totals.Out.Packets, reasons(g.Refused), reasons(g.AuthFailures))
			for _, c := range g.Connections {
				d.row("connection", pid, c.Remote, c.User, c.Key, c.KeyComment, c.PeerVersion, unix(c.Since), seconds(c.RTT),
					c.Forwards.Used, c.Forwards.Limit)
				for i := range c.Tunnels {
					d.tunnel(pid, c.Remote, &c.Tunnels[i])
				}
			}
		}
		if c := r.Client; c != nil {
			d.row("client", pid, c.Server, c.State, unix(c.Since), c.LastError, unix(c.NextTry), c.Reconnects, c.PeerVersion,
				seconds(c.RTT), joinAll(c.Routes, ","), joinAll(c.DNS, ","),
				c.Totals.In.Bytes, c.Totals.In.Packets, c.Totals.Out.Bytes, c.Totals.Out.Packets)
			if c.Tunnel != nil {
				d.tunnel(pid, c.Server, c.Tunnel)
			}
		}
	}
	return d.err
}

type dumper struct {
	w   io.Writer
	b   []byte
	err error
}

func (d *dumper) tunnel(pid, remote string, t *Tunnel) {
	var flows, memory Usage
	if t.Flows != nil {
		flows = *t.Flows
	}
	if t.Memory != nil {
		memory = *t.Memory
	}
	d.row("tunnel", pid, remote, t.Channel, t.Mode, t.Backend, t.Device,
		joinAll(t.Addresses, ","), joinAll(t.Claimed, ","), joinAll(t.Leased, ","), unix(t.Since), unix(t.LastReceived),
		t.In.Bytes, t.In.Packets, t.Out.Bytes, t.Out.Packets, reasons(t.In.Drops), reasons(t.Out.Drops),
		flows.Used, flows.Limit, memory.Used, memory.Limit)
}

// row writes one line; strings lose their tabs and newlines so that a
// peer's version or a key comment cannot add a column or a line.
func (d *dumper) row(kind string, fields ...any) {
	if d.err != nil {
		return
	}
	d.b = append(d.b[:0], kind...)
	for _, f := range fields {
		d.b = append(d.b, '\t')
		switch v := f.(type) {
		case string:
			d.b = append(d.b, field(v)...)
		default:
			d.b = fmt.Append(d.b, v)
		}
	}
	d.b = append(d.b, '\n')
	_, d.err = d.w.Write(d.b)
}

func field(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}

func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func seconds(d Duration) string {
	return strconv.FormatFloat(time.Duration(d).Seconds(), 'f', -1, 64)
}

func reasons(m map[string]uint64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, ",")
}
