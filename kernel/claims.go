package kernel

import (
	"net/netip"
	"sync"
)

// Claims records which tunnel device each client address lives behind.
// Every tunnel device of a gateway carries the same gateway address and
// prefix, so the prefix route alone would send every client's replies to
// whichever device came first; a host route per claimed address sends them
// to the right one, and a client can never take an address another client
// holds.
type Claims struct {
	mu    sync.Mutex
	owner map[netip.Addr]string
}

// NewClaims returns an empty registry.
func NewClaims() *Claims { return &Claims{owner: make(map[netip.Addr]string)} }

// claim gives a to dev unless another device holds it. It reports whether
// dev may use a, and whether the claim is new.
func (c *Claims) claim(a netip.Addr, dev string) (ok, fresh bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.owner[a] {
	case dev:
		return true, false
	case "":
		c.owner[a] = dev
		return true, true
	}
	return false, false
}

// release frees a.
func (c *Claims) release(a netip.Addr) {
	c.mu.Lock()
	delete(c.owner, a)
	c.mu.Unlock()
}

// reserve claims for dev the first address of network n that nobody holds,
// other than n's own address (the gateway's), the network address and, for
// IPv4, the broadcast address.
func (c *Claims) reserve(n netip.Prefix, dev string) (netip.Addr, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	base := n.Masked().Addr()
	for a, i := base.Next(), 0; a.IsValid() && n.Contains(a) && i < 1<<16; a, i = a.Next(), i+1 {
		if a == n.Addr() || c.owner[a] != "" || (a.Is4() && !n.Contains(a.Next())) {
			continue
		}
		c.owner[a] = dev
		return a, true
	}
	return netip.Addr{}, false
}
