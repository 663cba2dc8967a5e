package relay

import (
	"log/slog"
	"sort"
	"sync/atomic"
	"time"
)

// DropReason says why a packet was not delivered.
type DropReason int

const (
	DropMalformed DropReason = iota // cannot be framed: bad header, length or version
	DropTruncated                   // shorter than its own header says
	DropOversized                   // larger than the MTU or the peer's frame limit
	DropFamily                      // unknown or mismatched address family
	DropWrite                       // the destination refused it (EINVAL from a tun, ...)
	DropSpoofed                     // its source address belongs to another tunnel
	DropNoTunnel                    // no tunnel is up to take it (a client reconnecting)
	numDropReasons
)

var dropNames = [numDropReasons]string{"malformed", "truncated", "oversized", "family", "write", "spoofed", "no-tunnel"}

func (r DropReason) String() string {
	if r < 0 || r >= numDropReasons {
		return "unknown"
	}
	return dropNames[r]
}

// Counters counts one direction of traffic. The zero value is ready; all
// methods are safe for concurrent use.
type Counters struct {
	packets atomic.Uint64
	bytes   atomic.Uint64
	drops   [numDropReasons]atomic.Uint64
	last    atomic.Int64 // Unix nanoseconds of the latest Add with packets
}

// Add counts n packets totalling size bytes as delivered. It notes the
// time too: one clock read and one store per batch, not per packet, which
// BenchmarkPump does not see.
func (c *Counters) Add(n, size int) {
	if n <= 0 {
		return
	}
	c.packets.Add(uint64(n))
	c.bytes.Add(uint64(size))
	c.last.Store(time.Now().UnixNano())
}

// Drop counts one packet dropped for reason r.
func (c *Counters) Drop(r DropReason) {
	if r < 0 || r >= numDropReasons {
		r = DropMalformed
	}
	c.drops[r].Add(1)
}

// Snapshot is a point-in-time copy of Counters.
type Snapshot struct {
	Packets, Bytes uint64
	Drops          map[string]uint64 // by DropReason.String(), only reasons seen
	// Last is when the latest packet was counted; zero before the first.
	Last time.Time
}

// Snapshot copies the counters.
func (c *Counters) Snapshot() Snapshot {
	s := Snapshot{Packets: c.packets.Load(), Bytes: c.bytes.Load()}
	if ns := c.last.Load(); ns != 0 {
		s.Last = time.Unix(0, ns)
	}
	for r := range numDropReasons {
		if v := c.drops[r].Load(); v > 0 {
			if s.Drops == nil {
				s.Drops = make(map[string]uint64)
			}
			s.Drops[r.String()] = v
		}
	}
	return s
}

// Dropped is the total of all drops.
func (s Snapshot) Dropped() uint64 {
	var n uint64
	for _, v := range s.Drops {
		n += v
	}
	return n
}

// LogValue logs the counters as a group, naming only the drop reasons seen:
// in.packets=3 in.bytes=180 in.drops.malformed=1.
func (s Snapshot) LogValue() slog.Value {
	attrs := []slog.Attr{slog.Uint64("packets", s.Packets), slog.Uint64("bytes", s.Bytes)}
	if len(s.Drops) > 0 {
		names := make([]string, 0, len(s.Drops))
		for n := range s.Drops {
			names = append(names, n)
		}
		sort.Strings(names)
		drops := make([]any, 0, len(names))
		for _, n := range names {
			drops = append(drops, slog.Uint64(n, s.Drops[n]))
		}
		attrs = append(attrs, slog.Group("drops", drops...))
	}
	return slog.GroupValue(attrs...)
}
