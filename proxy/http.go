package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

const (
	// maxHeaderBytes bounds a request head (line and headers), as
	// net/http's server does by default for its own reasons: memory.
	maxHeaderBytes = 32 << 10
	// httpIdleTimeout is how long a kept-alive connection may wait for its
	// next request while holding a slot.
	httpIdleTimeout = 30 * time.Second
)

var errHeaderTooLarge = errors.New("request head larger than 32 KiB")

// headerLimit ends reads past n bytes; the HTTP front sets n before each
// request head and lifts it for the body.
type headerLimit struct {
	r io.Reader
	n int64
}

func (l *headerLimit) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errHeaderTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// serveHTTP answers CONNECT and absolute-URI requests, with keep-alive,
// each through its own Transport whose only dialler is Config.Dial.
func (cn *conn) serveHTTP() {
	tr := cn.transport()
	defer tr.CloseIdleConnections()
	for first := true; ; first = false {
		if !first {
			cn.c.SetReadDeadline(time.Now().Add(httpIdleTimeout))
		}
		cn.lim.n = maxHeaderBytes
		req, err := http.ReadRequest(cn.br)
		if err != nil {
			cn.badRequest(err, first)
			return
		}
		cn.lim.n = math.MaxInt64
		cn.c.SetDeadline(time.Time{})
		switch {
		case cn.refuse != nil:
			cn.httpError(req, HTTPStatus(cn.refuse), cn.refuse.Error(), "")
			return
		case !cn.authorized(req):
			return
		case req.Method == http.MethodConnect:
			cn.connectHTTP(req)
			return
		case !cn.forward(tr, req):
			return
		}
	}
}

// badRequest answers a request head that could not be read, unless the
// client just went away.
func (cn *conn) badRequest(err error, first bool) {
	var ne net.Error
	switch {
	case errors.Is(err, errHeaderTooLarge):
		cn.httpError(nil, http.StatusRequestHeaderFieldsTooLarge, err.Error(), "")
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
	case errors.As(err, &ne) && ne.Timeout():
		if first {
			cn.httpError(nil, http.StatusRequestTimeout, "no request within "+HandshakeTimeout.String(), "")
		}
	default:
		cn.httpError(nil, http.StatusBadRequest, "malformed request: "+err.Error(), "")
	}
}

// authorized checks Proxy-Authorization when Auth is set, answering 407
// when it is missing or wrong.
func (cn *conn) authorized(req *http.Request) bool {
	if cn.s.cfg.Auth == nil {
		return true
	}
	h := req.Header.Get("Proxy-Authorization")
	user, pass, ok := parseBasic(h)
	if ok && cn.s.cfg.Auth.Valid([]byte(user), []byte(pass)) {
		return true
	}
	msg := "proxy authentication required"
	if h != "" {
		cn.authFailed("HTTP proxy authentication failed: wrong user name or password")
		msg = "proxy authentication failed"
	}
	cn.httpError(req, http.StatusProxyAuthRequired, msg, "Proxy-Authenticate: Basic realm=\"sshvpn\"\r\n")
	return false
}

// parseBasic decodes "Basic base64(user:password)".
func parseBasic(h string) (user, pass string, ok bool) {
	scheme, cred, found := strings.Cut(h, " ")
	if !found || !strings.EqualFold(scheme, "Basic") {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return "", "", false
	}
	return strings.Cut(string(raw), ":")
}

// connectHTTP answers CONNECT host:port with 200, then splices.
func (cn *conn) connectHTTP(req *http.Request) {
	host, port, err := splitHostPort(req.URL.Host)
	if err != nil {
		cn.httpError(req, http.StatusBadRequest, "CONNECT "+req.URL.Host+": "+err.Error(), "")
		return
	}
	far, err := cn.dial(cn.o.ctx, host, port)
	if err != nil {
		cn.httpError(req, HTTPStatus(err), "CONNECT "+hostPort(host, port)+": "+err.Error(), "")
		return
	}
	if _, err := io.WriteString(cn.c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		far.Close()
		return
	}
	cn.spliceTo(far)
}

// splitHostPort splits an authority; the port is required and not zero.
func splitHostPort(authority string) (string, uint16, error) {
	host, p, err := net.SplitHostPort(authority)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil || port == 0 || host == "" {
		return "", 0, fmt.Errorf("bad host or port in %q", authority)
	}
	return host, uint16(port), nil
}

func (cn *conn) transport() *http.Transport {
	return &http.Transport{
		Proxy: nil, // never a proxy of its own, and no local name lookups
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			host, port, err := splitHostPort(addr)
			if err != nil {
				return nil, err
			}
			return cn.dial(ctx, host, port)
		},
		DisableCompression:     true, // pass the client's Accept-Encoding through as it is
		MaxIdleConnsPerHost:    2,
		IdleConnTimeout:        httpIdleTimeout,
		MaxResponseHeaderBytes: 64 << 10,
		TLSNextProto:           map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1 only
	}
}

// forward relays one absolute-URI request and its response; true when the
// connection may carry another request.
func (cn *conn) forward(tr *http.Transport, req *http.Request) bool {
	if !req.URL.IsAbs() || req.URL.Host == "" {
		cn.httpError(req, http.StatusBadRequest, "this is a proxy: send absolute-URI requests (GET http://host/path) or CONNECT host:port", "")
		return false
	}
	if req.URL.Scheme != "http" {
		cn.httpError(req, http.StatusBadRequest, "only http:// URLs are fetched for clients; use CONNECT for "+req.URL.Scheme, "")
		return false
	}
	if strings.EqualFold(req.Header.Get("Expect"), "100-continue") {
		req.Header.Del("Expect")
		if _, err := io.WriteString(cn.c, "HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
			return false
		}
	}
	req.RequestURI = ""
	req.Host = "" // RFC 9112 §3.2.2: the absolute URI's authority wins over Host
	removeHopByHop(req.Header)
	body := &countingBody{r: req.Body, n: &cn.s.stats.bytesOut}
	if req.Body != nil && req.Body != http.NoBody {
		req.Body = body
	} else {
		body.eof.Store(true)
	}
	resp, err := tr.RoundTrip(req.WithContext(cn.o.ctx))
	if err != nil {
		cn.httpError(req, HTTPStatus(err), req.Method+" "+req.URL.Redacted()+": "+err.Error(), "")
		return false
	}
	defer resp.Body.Close()
	return cn.writeResponse(req, resp) && body.eof.Load()
}

// writeResponse writes resp back without its hop-by-hop headers; true when
// the connection may stay open.
func (cn *conn) writeResponse(req *http.Request, resp *http.Response) bool {
	removeHopByHop(resp.Header)
	keep := keepAlive(req, resp)
	resp.Close = !keep
	if cn.bw == nil {
		cn.bw = bufio.NewWriterSize(cn.c, readBufSize)
	}
	resp.Body = &flushingBody{r: resp.Body, w: cn.bw, n: &cn.s.stats.bytesIn}
	// writerOnly hides bufio's ReadFrom, which reads into its own buffer:
	// flushingBody's flush would reset that buffer under the read.
	if err := resp.Write(writerOnly{cn.bw}); err != nil {
		return false
	}
	return cn.bw.Flush() == nil && keep
}

// keepAlive reports whether both sides delimit their messages, so the
// client connection can carry another request.
func keepAlive(req *http.Request, resp *http.Response) bool {
	if req.Close || resp.Close || !req.ProtoAtLeast(1, 1) || !resp.ProtoAtLeast(1, 1) {
		return false
	}
	noBody := req.Method == http.MethodHead || resp.StatusCode == http.StatusNoContent ||
		resp.StatusCode == http.StatusNotModified || resp.StatusCode/100 == 1
	chunked := len(resp.TransferEncoding) > 0 && resp.TransferEncoding[0] == "chunked"
	return noBody || chunked || resp.ContentLength >= 0
}

// hopHeaders are the hop-by-hop headers of RFC 9110 §7.6.1 and the
// non-standard Proxy-Connection.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// removeHopByHop removes what belongs to one hop: the headers Connection
// names, the fixed list, and every Proxy-* header (credentials for us).
func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				h.Del(f)
			}
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
	for k := range h {
		if strings.HasPrefix(k, "Proxy-") {
			delete(h, k)
		}
	}
}

// countingBody counts a request body and remembers whether it was read to
// its end: only then is the client connection safe to read again.
type countingBody struct {
	r   io.ReadCloser
	n   *atomic.Uint64
	eof atomic.Bool
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n.Add(uint64(n))
	if err == io.EOF {
		b.eof.Store(true)
	}
	return n, err
}

func (b *countingBody) Close() error { return b.r.Close() }

// flushingBody counts a response body and flushes what is buffered before
// each read that may block, so a streamed response is not held back.
type flushingBody struct {
	r io.ReadCloser
	w *bufio.Writer
	n *atomic.Uint64
}

func (b *flushingBody) Read(p []byte) (int, error) {
	if b.w.Buffered() > 0 {
		if err := b.w.Flush(); err != nil {
			return 0, err
		}
	}
	n, err := b.r.Read(p)
	b.n.Add(uint64(n))
	return n, err
}

func (b *flushingBody) Close() error { return b.r.Close() }

type writerOnly struct{ io.Writer }

// httpError answers with code and a one-line text/plain body that says
// why, so curl's user sees it, and closes the connection.
func (cn *conn) httpError(req *http.Request, code int, msg, extra string) {
	msg = strings.Join(strings.Fields(msg), " ")
	body := "sshvpn proxy: " + msg + "\n"
	length := len(body)
	if req != nil && req.Method == http.MethodHead {
		body = ""
	}
	fmt.Fprintf(cn.c, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n%s\r\n%s",
		code, http.StatusText(code), length, extra, body)
}
