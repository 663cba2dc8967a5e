package stack

import (
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// Fixed costs charged to Limits.Memory for the buffers a flow's relay
// holds while it is open.
const (
	tcpRelayCost = 2 * 32 << 10 // io.Copy's buffer, each direction
	udpRelayCost = 2 * 64 << 10 // copyDatagrams' buffers
	memorySample = time.Second  // how often the stack's queues are summed
)

// memory enforces Limits.Memory for one client. Relay buffers are charged
// when a flow opens; what its TCP connections hold in gVisor's send and
// receive queues (up to the buffer sizes each, a few MiB) is summed every
// memorySample, and over the limit the largest connections are reset.
type memory struct {
	c       *client
	limit   int64
	charged atomic.Int64 // relay buffers of open flows
	held    atomic.Int64 // gVisor's queues at the last sample

	mu   sync.Mutex
	tcp  map[tcpip.Endpoint]struct{}
	stop chan struct{}
}

func (m *memory) init(c *client) {
	m.c, m.limit = c, c.limits.Memory
	m.tcp = map[tcpip.Endpoint]struct{}{}
	if m.limit < 0 || !c.group.begin() {
		return
	}
	m.stop = make(chan struct{})
	c.group.track(m)
	go m.sample()
}

// take charges n bytes for a new flow, or refuses it (counted, warned once)
// when the client is at its limit.
func (m *memory) take(n int64) bool {
	if m.limit < 0 {
		return true
	}
	if m.charged.Add(n)+m.held.Load()+m.c.ep.queued.Load() > m.limit {
		m.charged.Add(-n)
		m.c.stats.MemoryLimited.Add(1)
		m.c.warnLimit("memory", int(m.limit))
		return false
	}
	return true
}

func (m *memory) give(n int64) {
	if m.limit >= 0 {
		m.charged.Add(-n)
	}
}

func (m *memory) addTCP(ep tcpip.Endpoint) {
	m.mu.Lock()
	m.tcp[ep] = struct{}{}
	m.mu.Unlock()
}

func (m *memory) removeTCP(ep tcpip.Endpoint) {
	m.mu.Lock()
	delete(m.tcp, ep)
	m.mu.Unlock()
}

func (m *memory) sample() {
	defer m.c.group.done()
	t := time.NewTicker(memorySample)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.check()
		}
	}
}

// check sums the TCP queues and, over the limit, resets the connections
// holding the most until the client is under it again.
func (m *memory) check() {
	type held struct {
		ep tcpip.Endpoint
		n  int64
	}
	m.mu.Lock()
	all := make([]held, 0, len(m.tcp))
	var total int64
	for ep := range m.tcp {
		n := queueBytes(ep)
		total += n
		all = append(all, held{ep, n})
	}
	m.mu.Unlock()
	m.held.Store(total)
	over := m.charged.Load() + total + m.c.ep.queued.Load() - m.limit
	for over > 0 && len(all) > 0 {
		big := 0
		for i := range all {
			if all[i].n > all[big].n {
				big = i
			}
		}
		if all[big].n == 0 {
			break
		}
		m.c.warnLimit("memory", int(m.limit))
		m.c.stats.MemoryResets.Add(1)
		all[big].ep.Abort()
		over -= all[big].n
		m.held.Add(-all[big].n)
		all[big] = all[len(all)-1]
		all = all[:len(all)-1]
	}
}

func queueBytes(ep tcpip.Endpoint) int64 {
	var n int64
	if v, err := ep.GetSockOptInt(tcpip.ReceiveQueueSizeOption); err == nil {
		n += int64(v)
	}
	if v, err := ep.GetSockOptInt(tcpip.SendQueueSizeOption); err == nil {
		n += int64(v)
	}
	return n
}

// Close stops the sampler; the client's group calls it once, on close.
func (m *memory) Close() error {
	close(m.stop)
	return nil
}
