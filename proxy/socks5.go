package proxy

import (
	"bytes"
	"net/netip"
)

// serveSOCKS5 runs RFC 1928: method selection, RFC 1929 when Auth is set,
// then one request.
func (cn *conn) serveSOCKS5() {
	if !cn.negotiate() {
		return
	}
	var req request
	err := cn.peek(3, func(b []byte) (n int, err error) {
		req, n, err = parseSOCKS5Request(b)
		return n, err
	})
	if err != nil {
		// A request we cannot parse is answered; a connection that
		// failed or timed out is not.
		switch err {
		case errAddrType:
			cn.reply5(socks5AddrUnsupported, netip.AddrPort{})
		case errNameLen, errVersion:
			cn.reply5(socks5GeneralFailure, netip.AddrPort{})
		}
		cn.log.Debug("proxy: bad SOCKS5 request", "client", cn.c.RemoteAddr(), "err", err)
		return
	}
	switch req.cmd {
	case cmdConnect:
		cn.connect5(req)
	case cmdUDPAssociate:
		cn.associate(req)
	default: // BIND, and anything unknown
		cn.reply5(socks5CmdUnsupported, netip.AddrPort{})
	}
}

// negotiate picks a method: 02 when Auth is set (and then never 00), 00
// when it is not, FF when the client offered neither.
func (cn *conn) negotiate() bool {
	var methods []byte
	err := cn.peek(2, func(b []byte) (n int, err error) {
		methods, n, err = parseGreeting(b)
		methods = bytes.Clone(methods)
		return n, err
	})
	if err == errMethods {
		// RFC 1928: FF is the answer when no offered method is acceptable.
		cn.c.Write([]byte{socks5Version, methodNone})
		return false
	}
	if err != nil {
		return false
	}
	want := byte(methodNoAuth)
	if cn.s.cfg.Auth != nil {
		want = methodPassword
	}
	if bytes.IndexByte(methods, want) < 0 {
		cn.c.Write([]byte{socks5Version, methodNone})
		if want == methodPassword {
			cn.authFailed("a SOCKS5 client offered no username/password method, which this proxy requires", "offered", methods)
			return false
		}
		cn.log.Debug("proxy: no acceptable SOCKS5 method", "client", cn.c.RemoteAddr(), "offered", methods)
		return false
	}
	if _, err := cn.c.Write([]byte{socks5Version, want}); err != nil {
		return false
	}
	return want == methodNoAuth || cn.authenticate()
}

// authenticate runs RFC 1929's subnegotiation.
func (cn *conn) authenticate() bool {
	var ok bool
	err := cn.peek(2, func(b []byte) (n int, err error) {
		user, pass, n, err := parseUserPass(b)
		if err == nil {
			ok = cn.s.cfg.Auth.Valid(user, pass)
		}
		return n, err
	})
	if err != nil {
		return false
	}
	if !ok {
		cn.authFailed("SOCKS5 authentication failed: wrong user name or password")
		cn.c.Write([]byte{authVersion, 0x01})
		return false
	}
	_, err = cn.c.Write([]byte{authVersion, 0x00})
	return err == nil
}

func (cn *conn) reply5(rep byte, bnd netip.AddrPort) error {
	var b [4 + 16 + 2]byte
	_, err := cn.c.Write(appendSOCKS5Reply(b[:0], rep, bnd))
	return err
}

func (cn *conn) connect5(req request) {
	far, err := cn.dial(cn.o.ctx, req.host, req.port)
	if err != nil {
		cn.reply5(SOCKS5Reply(err), netip.AddrPort{})
		return
	}
	if err := cn.reply5(socks5Succeeded, localAddrPort(far)); err != nil {
		far.Close()
		return
	}
	cn.spliceTo(far)
}

// authFailed counts a client that did not authenticate; the first on a
// listener is a warning, so the user learns why clients fail.
func (cn *conn) authFailed(why string, args ...any) {
	cn.s.stats.authFailures.Add(1)
	cn.warnOnce(&cn.l.warnedAuth, "proxy: "+why, append([]any{"listener", cn.c.LocalAddr(), "client", cn.c.RemoteAddr()}, args...)...)
}
