package proxy

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
)

// The wire parsers of SOCKS4, SOCKS4a, SOCKS5 (RFC 1928, RFC 1929) and the
// SOCKS5 UDP header. They are pure: each takes the bytes read so far and
// returns what it parsed and how many bytes that took, or errShort with
// the total length it needs at least, so the reader peeks that much more
// and calls again. Fuzzed by FuzzSOCKSRequest and FuzzUDPHeader.

// errShort means the message is incomplete; the returned length is how
// many bytes, at least, the whole message needs.
var errShort = errors.New("message incomplete")

var (
	errVersion  = errors.New("unsupported SOCKS version")
	errAddrType = errors.New("unsupported address type")
	errNameLen  = errors.New("empty destination name")
	errTooLong  = errors.New("field longer than 255 bytes")
	errMethods  = errors.New("no authentication methods offered")
	errAuthVer  = errors.New("unsupported username/password auth version")
)

const (
	socks4Version  = 0x04
	socks5Version  = 0x05
	authVersion    = 0x01 // RFC 1929
	methodNoAuth   = 0x00
	methodPassword = 0x02
	methodNone     = 0xff

	cmdConnect      = 0x01
	cmdBind         = 0x02
	cmdUDPAssociate = 0x03

	atypIPv4 = 0x01
	atypName = 0x03
	atypIPv6 = 0x04

	// maxSOCKS4 bounds a SOCKS4a request: 8 fixed bytes, a user ID and a
	// name of up to 255 bytes each with their NULs.
	maxSOCKS4 = 8 + 256 + 256
)

// request is a parsed SOCKS CONNECT, BIND or UDP ASSOCIATE.
type request struct {
	cmd  byte
	host string // a name exactly as sent, or an address literal
	port uint16
	addr netip.Addr // valid when the client sent an address, not a name
}

// parseGreeting parses SOCKS5's VER NMETHODS METHODS and returns the methods.
func parseGreeting(b []byte) (methods []byte, n int, err error) {
	if len(b) < 2 {
		return nil, 2, errShort
	}
	if b[0] != socks5Version {
		return nil, 0, errVersion
	}
	n = 2 + int(b[1])
	if b[1] == 0 {
		return nil, 0, errMethods
	}
	if len(b) < n {
		return nil, n, errShort
	}
	return b[2:n], n, nil
}

// parseUserPass parses RFC 1929's VER ULEN UNAME PLEN PASSWD. The returned
// slices alias b.
func parseUserPass(b []byte) (user, pass []byte, n int, err error) {
	if len(b) < 2 {
		return nil, nil, 2, errShort
	}
	if b[0] != authVersion {
		return nil, nil, 0, errAuthVer
	}
	ulen := int(b[1])
	if len(b) < 2+ulen+1 {
		return nil, nil, 2 + ulen + 1, errShort
	}
	plen := int(b[2+ulen])
	n = 3 + ulen + plen
	if len(b) < n {
		return nil, nil, n, errShort
	}
	return b[2 : 2+ulen], b[3+ulen : n], n, nil
}

// parseSOCKS5Request parses VER CMD RSV ATYP DST.ADDR DST.PORT.
func parseSOCKS5Request(b []byte) (req request, n int, err error) {
	if len(b) < 3 {
		return req, 3, errShort
	}
	if b[0] != socks5Version {
		return req, 0, errVersion
	}
	req.cmd = b[1]
	host, addr, port, m, err := parseAddr(b[3:])
	if err != nil {
		return req, 3 + m, err
	}
	req.host, req.addr, req.port = host, addr, port
	return req, 3 + m, nil
}

// parseAddr parses ATYP DST.ADDR DST.PORT. A name is returned as a string
// (and addr invalid); an address both as addr and as its text.
func parseAddr(b []byte) (host string, addr netip.Addr, port uint16, n int, err error) {
	a, nameStart, nameEnd, port, n, err := parseAddrNoAlloc(b)
	if err != nil {
		return "", a, 0, n, err
	}
	if a.IsValid() {
		return a.String(), a, port, n, nil
	}
	return string(b[nameStart:nameEnd]), a, port, n, nil
}

// parseAddrNoAlloc is parseAddr for the UDP hot path: a name comes back as
// the bounds of its bytes in b.
func parseAddrNoAlloc(b []byte) (addr netip.Addr, nameStart, nameEnd int, port uint16, n int, err error) {
	if len(b) < 2 {
		return addr, 0, 0, 0, 2, errShort
	}
	switch b[0] {
	case atypIPv4:
		n = 1 + 4 + 2
		if len(b) < n {
			return addr, 0, 0, 0, n, errShort
		}
		addr = netip.AddrFrom4([4]byte(b[1:5]))
	case atypIPv6:
		n = 1 + 16 + 2
		if len(b) < n {
			return addr, 0, 0, 0, n, errShort
		}
		addr = netip.AddrFrom16([16]byte(b[1:17]))
	case atypName:
		l := int(b[1])
		if l == 0 {
			return addr, 0, 0, 0, 0, errNameLen
		}
		n = 2 + l + 2
		if len(b) < n {
			return addr, 0, 0, 0, n, errShort
		}
		nameStart, nameEnd = 2, 2+l
	default:
		return addr, 0, 0, 0, 0, errAddrType
	}
	return addr, nameStart, nameEnd, binary.BigEndian.Uint16(b[n-2 : n]), n, nil
}

// parseSOCKS4Request parses VN CD DSTPORT DSTIP USERID NUL, and for
// SOCKS4a (DSTIP 0.0.0.x, x≠0) the name and its NUL that follow.
func parseSOCKS4Request(b []byte) (req request, user []byte, n int, err error) {
	if len(b) < 9 {
		return req, nil, 9, errShort
	}
	if b[0] != socks4Version {
		return req, nil, 0, errVersion
	}
	req.cmd = b[1]
	req.port = binary.BigEndian.Uint16(b[2:4])
	ip := [4]byte(b[4:8])
	userEnd, err := nulAt(b, 8)
	if err != nil {
		return req, nil, userEnd, err
	}
	user, n = b[8:userEnd], userEnd+1
	if ip[0] != 0 || ip[1] != 0 || ip[2] != 0 || ip[3] == 0 {
		req.addr = netip.AddrFrom4(ip)
		req.host = req.addr.String()
		return req, user, n, nil
	}
	nameEnd, err := nulAt(b, n)
	if err != nil {
		return req, nil, nameEnd, err
	}
	if nameEnd == n {
		return req, nil, 0, errNameLen
	}
	req.host = string(b[n:nameEnd])
	return req, user, nameEnd + 1, nil
}

// nulAt finds the NUL that ends a string starting at from, at most 255
// bytes long; errShort asks for one more byte.
func nulAt(b []byte, from int) (int, error) {
	for i := from; i < len(b); i++ {
		if b[i] == 0 {
			return i, nil
		}
		if i-from >= 255 {
			return 0, errTooLong
		}
	}
	if len(b)-from > 255 {
		return 0, errTooLong
	}
	return len(b) + 1, errShort
}

// maxUDPHeader is the longest header a reply carries: RSV RSV FRAG ATYP,
// 16 address bytes, the port.
const maxUDPHeader = 4 + 16 + 2

// udpHeader is a parsed SOCKS5 UDP request header (RFC 1928 §7).
type udpHeader struct {
	frag               byte
	addr               netip.Addr // invalid when the destination is a name
	nameStart, nameEnd int        // the name's bounds in the datagram
	port               uint16
	n                  int // header length: the payload starts here
}

// parseUDPHeader parses RSV RSV FRAG ATYP DST.ADDR DST.PORT without
// allocating. A short datagram is malformed: UDP has no "read more".
func parseUDPHeader(b []byte) (h udpHeader, err error) {
	if len(b) < 4 {
		return h, errShort
	}
	h.frag = b[2]
	a, ns, ne, port, m, err := parseAddrNoAlloc(b[3:])
	if err != nil {
		return h, err
	}
	h.addr, h.nameStart, h.nameEnd, h.port, h.n = a, 3+ns, 3+ne, port, 3+m
	return h, nil
}

// putUDPHeader writes the reply header for src so that it ends exactly at
// len(b), in front of a payload that starts there, and returns where it
// begins. b must hold maxUDPHeader bytes.
func putUDPHeader(b []byte, src netip.AddrPort) int {
	a := src.Addr().Unmap()
	end := len(b)
	binary.BigEndian.PutUint16(b[end-2:], src.Port())
	var start int
	if a.Is4() {
		v := a.As4()
		start = end - 2 - 4 - 4
		copy(b[start+4:], v[:])
		b[start+3] = atypIPv4
	} else {
		v := a.As16()
		start = end - 2 - 16 - 4
		copy(b[start+4:], v[:])
		b[start+3] = atypIPv6
	}
	b[start], b[start+1], b[start+2] = 0, 0, 0
	return start
}

// appendSOCKS5Reply appends VER REP RSV ATYP BND.ADDR BND.PORT.
func appendSOCKS5Reply(b []byte, rep byte, bnd netip.AddrPort) []byte {
	a := bnd.Addr().Unmap()
	b = append(b, socks5Version, rep, 0)
	if a.Is6() {
		v := a.As16()
		b = append(b, atypIPv6)
		b = append(b, v[:]...)
	} else {
		var v [4]byte
		if a.Is4() {
			v = a.As4()
		}
		b = append(b, atypIPv4)
		b = append(b, v[:]...)
	}
	return binary.BigEndian.AppendUint16(b, bnd.Port())
}

// hostPort joins a request's destination for logs and HTTP's authority.
func hostPort(host string, port uint16) string {
	if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
		return "[" + host + "]:" + strconv.Itoa(int(port))
	}
	return host + ":" + strconv.Itoa(int(port))
}
