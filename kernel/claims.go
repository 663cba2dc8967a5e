package kernel

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/sshvpn/sshvpn/relay"
)

// claimTable records which tunnel device each client address lives behind.
// Every tunnel device of a gateway carries the same gateway address, with
// no prefix route; a host route per claimed address sends each client's
// traffic to its own device, and a client can never take an address another
// key holds.
//
// A key owns one stable address per tunnel network, derived from its
// fingerprint, so that a reconnecting client gets the address it had and
// gateways behind one load balancer hand a key the same address with no
// shared store. A newer tunnel of the same key takes that address over, as
// a WireGuard peer roams: one key is one client.
type claimTable struct {
	mu        sync.Mutex
	owner     map[netip.Addr]*claim
	perKey    map[string]int // addresses a key claimed by sending from them
	maxPerKey int
	limitText string // the drop reason at the limit, made once
}

// claim is one address held by one tunnel.
type claim struct {
	addr     netip.Addr
	dev, key string
	reserved bool        // handed out by Reserve, not claimed by sending
	lost     atomic.Bool // a newer tunnel of the same key took it over
}

// DefaultClaimsPerKey bounds the addresses one key may claim by sending
// from them, beyond those the gateway handed out: a client cycling through
// source addresses cannot fill the pool and lock out other keys.
const DefaultClaimsPerKey = 4

// newClaimTable returns an empty registry that lets each key claim up to
// perKey addresses by sending from them (DefaultClaimsPerKey when 0).
func newClaimTable(perKey int) *claimTable {
	if perKey <= 0 {
		perKey = DefaultClaimsPerKey
	}
	return &claimTable{owner: make(map[netip.Addr]*claim), perKey: make(map[string]int), maxPerKey: perKey,
		limitText: fmt.Sprintf("the key holds the %d addresses it may claim by sending", perKey)}
}

// claimResult says how a claim went.
type claimResult int

const (
	claimFresh    claimResult = iota // a new claim: route it
	claimTakeover                    // an older tunnel of the same key held it: route it here instead
	claimHeld                        // another tunnel holds the address
	claimLimited                     // the key holds all the claims it may
)

// claim gives a to dev for key unless another key holds it or the key is
// at its limit. An address an older tunnel of the same key claimed is taken
// over, as Reserve takes over a reserved one: a client that reconnects
// before its old session is reaped keeps the address it chose.
func (c *claimTable) claim(a netip.Addr, dev, key string) (*claim, claimResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.owner[a]
	if old != nil && (old.key != key || key == "") {
		return nil, claimHeld
	}
	if old != nil {
		old.lost.Store(true)
		cl := &claim{addr: a, dev: dev, key: key, reserved: old.reserved}
		if !old.reserved {
			c.perKey[key]++ // the old one's count goes when it is released
		}
		c.owner[a] = cl
		return cl, claimTakeover
	}
	if c.perKey[key] >= c.maxPerKey {
		return nil, claimLimited
	}
	cl := &claim{addr: a, dev: dev, key: key}
	c.owner[a] = cl
	c.perKey[key]++
	return cl, claimFresh
}

// reclaim gives cl back the address a newer tunnel of the same key took
// over, once that tunnel has let it go: the client behind cl still sends
// from it (two clients of one key on one host, the newer one gone), and
// one key is one client again.
func (c *claimTable) reclaim(cl *claim) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.owner[cl.addr] != nil {
		return false
	}
	c.owner[cl.addr] = cl
	cl.lost.Store(false)
	return true
}

// abandon undoes a reclaim that could not be routed.
func (c *claimTable) abandon(cl *claim) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cl.lost.Store(true)
	if c.owner[cl.addr] == cl {
		delete(c.owner, cl.addr)
	}
}

// release frees cl's address, unless it was taken over.
func (c *claimTable) release(cl *claim) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.owner[cl.addr] == cl {
		delete(c.owner, cl.addr)
	}
	if !cl.reserved {
		if c.perKey[cl.key]--; c.perKey[cl.key] <= 0 {
			delete(c.perKey, cl.key)
		}
	}
}

// reserve hands dev a client address of network n for key: the key's
// stable address when it is free or the key's own (then taken over,
// takeover reports it), else the next free one after it. It never hands
// out n's own address (the gateway's), the network address or, for IPv4,
// the broadcast address.
func (c *claimTable) reserve(n netip.Prefix, dev, key string) (cl *claim, takeover, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := relay.PickAddress(key, n, n.Addr(), func(a netip.Addr) bool {
		old := c.owner[a]
		return old == nil || (old.key == key && key != "" && old.reserved)
	})
	if !ok {
		return nil, false, false
	}
	if old := c.owner[a]; old != nil {
		old.lost.Store(true)
		takeover = true
	}
	cl = &claim{addr: a, dev: dev, key: key, reserved: true}
	c.owner[a] = cl
	return cl, takeover, true
}
