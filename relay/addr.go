package relay

import (
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
)

// StableOffset is where in n, of size addresses, a key's address lies: a
// hash of the key and the network, the same on every gateway and for both
// backends, in the upper half of the network so that clients who pick
// their own address (the low ones, by habit: .2) rarely meet a handed-out
// one. A key-less tunnel starts at 1.
func StableOffset(key string, n netip.Prefix, size uint64) uint64 {
	if key == "" || size < 4 {
		return 1
	}
	h := sha256.Sum256([]byte(key + "\x00" + n.Masked().String()))
	return size/2 + binary.BigEndian.Uint64(h[:8])%(size/2)
}

// PickAddress gives key an address of n that usable takes: its stable one
// (StableOffset) when usable, else the next after it that is, wrapping
// around; it looks at 65,536 at most. It never gives n's network address,
// gw (the gateway's own) or, for IPv4, the broadcast address. Both backends
// hand out client addresses with it, each with its own idea of usable.
func PickAddress(key string, n netip.Prefix, gw netip.Addr, usable func(netip.Addr) bool) (netip.Addr, bool) {
	n = n.Masked()
	size := uint64(1) << min(n.Addr().BitLen()-n.Bits(), 63)
	start := StableOffset(key, n, size)
	for i := uint64(0); i < min(size, 1<<16); i++ {
		off := (start + i) % size
		a := AddOffset(n.Addr(), off)
		if off == 0 || a == gw || (a.Is4() && off == size-1) {
			continue
		}
		if usable(a) {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// ContainsAny reports whether any of ps contains a.
func ContainsAny(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// AddOffset adds off to the low 64 bits of base, a network address.
func AddOffset(base netip.Addr, off uint64) netip.Addr {
	if base.Is4() {
		b := base.As4()
		return netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, binary.BigEndian.Uint32(b[:])+uint32(off))))
	}
	b := base.As16()
	binary.BigEndian.PutUint64(b[8:], binary.BigEndian.Uint64(b[8:])+off)
	return netip.AddrFrom16(b)
}
