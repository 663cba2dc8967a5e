package proxy

import "encoding/binary"

// serveSOCKS4 runs SOCKS4 and SOCKS4a CONNECT, as ssh -D accepts them.
// SOCKS4 has no password, so it is refused when Auth is set.
func (cn *conn) serveSOCKS4() {
	var req request
	err := cn.peek(9, func(b []byte) (n int, err error) {
		req, _, n, err = parseSOCKS4Request(b)
		return n, err
	})
	if err != nil {
		if err == errNameLen || err == errTooLong {
			cn.reply4(socks4Rejected) // a request we cannot parse is answered
		}
		cn.log.Debug("proxy: bad SOCKS4 request", "client", cn.c.RemoteAddr(), "err", err)
		return
	}
	if cn.s.cfg.Auth != nil {
		cn.s.stats.authFailures.Add(1)
		cn.warnOnce(&cn.l.warnedSOCKS4, "proxy: SOCKS4 refused: this proxy requires a password, which SOCKS4 cannot carry; use SOCKS5",
			"listener", cn.c.LocalAddr(), "client", cn.c.RemoteAddr())
		cn.reply4(socks4Rejected)
		return
	}
	if req.cmd != cmdConnect {
		cn.reply4(socks4Rejected)
		return
	}
	far, err := cn.dial(cn.o.ctx, req.host, req.port)
	if err != nil {
		cn.reply4(SOCKS4Reply(err))
		return
	}
	if err := cn.reply4(socks4Granted); err != nil {
		far.Close()
		return
	}
	cn.spliceTo(far)
}

// reply4 writes VN=0 CD DSTPORT DSTIP; clients ignore the address, so it
// carries none.
func (cn *conn) reply4(cd byte) error {
	var b [8]byte
	b[1] = cd
	binary.BigEndian.PutUint16(b[2:4], 0)
	_, err := cn.c.Write(b[:])
	return err
}
