package stack

import (
	"sync"
	"syscall"
)

// hostSockets bounds the host sockets that the flows of all clients hold
// together, and the share of them one key may hold. The per-client limits
// alone let one key with 8 tunnels hold 8 × (4096 + 1024) sockets, more
// than many hosts' fd limit: the process would then fail every accept,
// DNS query and flow, everyone's. So the flows get the fd limit less a
// reserve for logins, the DNS service and the runtime, and one key at most
// a quarter of that.
type hostSockets struct {
	max, perKey int64

	mu    sync.Mutex
	total int64
	byKey map[string]int64
}

// Of the fd limit, what the flows may not have: at least socketReserve, or
// an eighth.
const socketReserve = 512

// newHostSockets makes the budget for n sockets in all: from the process's
// fd limit when n is 0, none when it is negative.
func newHostSockets(n int64) *hostSockets {
	if n == 0 {
		n = 1 << 40
		var l syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err == nil && l.Cur < 1<<40 {
			n = max(int64(l.Cur)-max(socketReserve, int64(l.Cur)/8), 64)
		}
	}
	if n < 0 {
		return &hostSockets{max: -1}
	}
	return &hostSockets{max: n, perKey: max(n/4, 1), byKey: map[string]int64{}}
}

// take counts one more socket for key, or refuses it and says whose limit
// is spent: the gateway's budget or the key's share.
func (h *hostSockets) take(key string) (ok bool, spent string, limit int64) {
	if h.max < 0 {
		return true, "", 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.byKey[key] >= h.perKey:
		return false, "host sockets of one key", h.perKey
	case h.total >= h.max:
		return false, "host sockets of all clients", h.max
	}
	h.total++
	h.byKey[key]++
	return true, "", 0
}

// takeSocket charges one host socket for a new flow of c to the gateway's
// budget, or refuses the flow (counted, warned once).
func (c *client) takeSocket() bool {
	ok, spent, limit := c.sockets.take(c.key)
	if !ok {
		c.stats.SocketsLimited.Add(1)
		c.warnLimit(spent, int(limit))
	}
	return ok
}

// give returns a socket take counted.
func (h *hostSockets) give(key string) {
	if h.max < 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.total--
	if h.byKey[key]--; h.byKey[key] <= 0 {
		delete(h.byKey, key)
	}
}
