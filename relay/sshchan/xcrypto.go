package sshchan

// This file is the one place where sshvpn reaches into golang.org/x/crypto/ssh
// internals. It exists because the public API cannot do what tun@openssh.com
// needs of a channel (golang/go#70029), nor send SSH_MSG_DISCONNECT:
//
//   - Write one datagram as exactly one SSH_MSG_CHANNEL_DATA. Channel.Write
//     splits a write across messages when the peer's window is short, and
//     OpenSSH takes every message as a whole packet, so a split write becomes
//     two corrupt packets.
//   - Charge the window the way the peer does. An OpenSSH receiver debits and
//     credits len+4 per datagram (the string's length word), asyncssh len-4;
//     x/crypto debits len. Each packet OpenSSH consumes thus widens x/crypto's
//     idea of its window by 4 bytes, a fast sender overruns it, and OpenSSH
//     ≥ 9.6 disconnects with "peer ignored channel window"; each one asyncssh
//     consumes narrows it, until the tunnel stalls. writeDatagram keeps
//     x/crypto's count as the peer's own (sendWindow, peerwindow.go).
//   - Read one message at a time. Channel.Read concatenates queued messages,
//     so packet boundaries are lost; with exact reads a malformed packet costs
//     that packet alone. (take does the same without returning window, for
//     Receiver.)
//
// The shim mirrors two unexported types (window, buffer) whose layout is
// checked field by field with reflect before any pointer is converted. If
// x/crypto/ssh changes shape, newChanShim fails and New fails closed: it
// refuses a tunnel to any stock peer, whose datagrams Channel.Write could
// split, and re-frames the byte stream (wire's framer) only toward an
// sshvpn peer, which re-frames what it reads anyway.
// TestChanShimMatchesXCrypto fails loudly first. No x/crypto code is copied.
//
// Leaving politely. RFC 4253 §11.1: a side that ends the connection sends
// SSH_MSG_DISCONNECT first, and ssh does on exit ("disconnected by user",
// reason 11). x/crypto/ssh has no way to send it: Conn.Close drops the
// socket, and sshd then logs a broken connection rather than a user who
// left. Disconnect writes the message through the transport's own
// writePacket (linknamed), so it is encrypted and sequenced like any other.
// A linkname is checked by no compiler, so Disconnect uses it only with the
// x/crypto version it was read against (auditedXCrypto) and a transport of
// the expected type; otherwise it only closes. TestDisconnectReachesPeer
// fails first.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/crypto/ssh"
)

// xWindow mirrors ssh.window (x/crypto/ssh common.go).
type xWindow struct {
	*sync.Cond
	win          uint32
	writeWaiters int
	closed       bool
}

// xBuffer mirrors ssh.buffer (x/crypto/ssh buffer.go).
type xBuffer struct {
	*sync.Cond
	head   *xElement
	tail   *xElement
	closed bool
}

// xElement mirrors ssh.element.
type xElement struct {
	buf  []byte
	next *xElement
}

// chanShim gives whole-message writes and reads on one ssh.Channel.
type chanShim struct {
	ch         ssh.Channel
	win        *xWindow
	pending    *xBuffer
	maxPayload uint32 // the peer's maximum packet size
	// maxInFlight, when set, is the most of its window writeDatagram lets
	// the peer hold unconsumed, and rtt the path's round trip (see
	// Channel.SetPathRTT).
	maxInFlight atomic.Int64
	rtt         atomic.Int64
	// send is the peer's window as the peer counts it, and the cap's
	// state; guarded by win.L.
	send sendWindow
	// capTimer wakes a write waiting on the cap when its patience ends;
	// guarded by win.L.
	capTimer *time.Timer
	log      *slog.Logger // nil: the events of send are not logged
}

var errShimShape = errors.New("x/crypto/ssh channel internals changed shape (golang/go#70029)")

// newChanShim binds the shim to ch, which must come from x/crypto/ssh
// (NewChannel.Accept or Conn.OpenChannel).
func newChanShim(ch ssh.Channel) (*chanShim, error) {
	v := reflect.ValueOf(ch)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("%w: %T is not *ssh.channel", errShimShape, ch)
	}
	sv := v.Elem()
	if t := sv.Type(); t.Name() != "channel" || t.PkgPath() != "golang.org/x/crypto/ssh" {
		return nil, fmt.Errorf("%w: %T is not *ssh.channel", errShimShape, ch)
	}
	win := sv.FieldByName("remoteWin")
	pend := sv.FieldByName("pending")
	maxp := sv.FieldByName("maxRemotePayload")
	if !win.IsValid() || !pend.IsValid() || !maxp.IsValid() || maxp.Kind() != reflect.Uint32 {
		return nil, fmt.Errorf("%w: missing remoteWin, pending or maxRemotePayload", errShimShape)
	}
	if err := sameLayout(win.Type(), reflect.TypeFor[xWindow]()); err != nil {
		return nil, fmt.Errorf("%w: window: %v", errShimShape, err)
	}
	if pend.Kind() != reflect.Pointer {
		return nil, fmt.Errorf("%w: pending is %s", errShimShape, pend.Type())
	}
	if err := sameLayout(pend.Type().Elem(), reflect.TypeFor[xBuffer]()); err != nil {
		return nil, fmt.Errorf("%w: buffer: %v", errShimShape, err)
	}
	elem := pend.Type().Elem().Field(1).Type.Elem()
	if err := sameLayout(elem, reflect.TypeFor[xElement]()); err != nil {
		return nil, fmt.Errorf("%w: element: %v", errShimShape, err)
	}
	s := &chanShim{
		ch:         ch,
		win:        (*xWindow)(unsafe.Pointer(win.UnsafeAddr())),
		pending:    *(**xBuffer)(unsafe.Pointer(pend.UnsafeAddr())),
		maxPayload: uint32(maxp.Uint()),
	}
	s.win.L.Lock()
	s.send = newSendWindow(s.win.win, 0, false)
	s.win.L.Unlock()
	return s, nil
}

// setPeer tells the shim what the peer's version string says: the charge
// it falls back to when the peer's adjusts teach none, and whether it
// returns window early.
func (s *chanShim) setPeer(p Peer, log *slog.Logger) {
	s.win.L.Lock()
	s.send.prior, s.send.early = p.priorCharge(), p == OpenSSH || p == SSHVPN
	s.win.L.Unlock()
	s.log = log
}

// sameLayout reports whether got has want's fields: same names, kinds,
// offsets and sizes, in order. Pointer fields to the mirrored types compare by
// kind only; the types they point to are checked separately.
func sameLayout(got, want reflect.Type) error {
	if got.Kind() != reflect.Struct || got.NumField() != want.NumField() || got.Size() != want.Size() {
		return fmt.Errorf("%s has %d fields and %d bytes, want %d and %d",
			got, got.NumField(), got.Size(), want.NumField(), want.Size())
	}
	for i := range want.NumField() {
		g, w := got.Field(i), want.Field(i)
		if g.Name != w.Name || g.Type.Kind() != w.Type.Kind() || g.Offset != w.Offset || g.Type.Size() != w.Type.Size() {
			return fmt.Errorf("field %d is %s %s at %d, want %s %s at %d",
				i, g.Name, g.Type, g.Offset, w.Name, w.Type, w.Offset)
		}
		if g.Type.Kind() == reflect.Pointer && g.Type.Elem().Name() != w.Type.Elem().Name() &&
			!(g.Type.Elem().Name() == "element" && w.Type.Elem().Name() == "xElement") {
			return fmt.Errorf("field %s points to %s", g.Name, g.Type.Elem())
		}
	}
	return nil
}

// writeDatagram sends p as exactly one SSH_MSG_CHANNEL_DATA. It first waits
// until the peer's window, as the peer counts it, holds p (sendWindow.admit:
// the window and the cap), then charges what the peer charges beyond
// len(p), and only then writes: Channel.Write then finds len(p) bytes of
// window and never splits. The caller must be the channel's only writer, or
// another write could take the window between the two steps.
func (s *chanShim) writeDatagram(p []byte) error {
	n := uint32(len(p))
	if n > s.maxPayload {
		return fmt.Errorf("datagram of %d bytes exceeds the peer's maximum packet of %d", len(p), s.maxPayload)
	}
	w := s.win
	w.L.Lock()
	for {
		w.win = s.send.observe(w.win)
		if w.closed {
			break
		}
		v := s.send.admit(n, w.win, s.maxInFlight.Load(), time.Duration(s.rtt.Load()))
		if v == send {
			w.win = s.send.sent(n, w.win)
			break
		}
		if v == armCap {
			s.armCapTimer()
		}
		w.Wait()
	}
	closed, ev := w.closed, s.send.events
	var what learnt
	if ev != 0 {
		s.send.events = 0
		what = learnt{s.send.charge, s.send.adjusts, s.send.fits()}
	}
	w.L.Unlock()
	if ev != 0 {
		s.logEvents(ev, what)
	}
	if closed {
		return io.EOF
	}
	_, err := s.ch.Write(p)
	return err
}

// armCapTimer wakes the writer when the cap's patience ends (capUntil),
// so that a peer that never adjusts does not hold it for good. Called with
// win.L held. A wake-up that finds the patience not over is harmless: the
// writer waits again, and a Reset timer runs again.
func (s *chanShim) armCapTimer() {
	d := time.Until(s.send.capUntil)
	if s.capTimer == nil {
		s.capTimer = time.AfterFunc(d, func() {
			s.win.L.Lock()
			s.win.Broadcast()
			s.win.L.Unlock()
		})
		return
	}
	s.capTimer.Reset(d)
}

// learnt is what the peer's adjusts taught of its window.
type learnt struct {
	charge  int32
	adjusts uint64
	fits    bool // the charge fits the adjusts; else the version's
}

// logEvents says what changed in the peer's window.
func (s *chanShim) logEvents(ev event, l learnt) {
	if s.log == nil {
		return
	}
	if ev&chargeLearnt != 0 {
		from := "its adjusts"
		if !l.fits {
			from = "its version: its adjusts fit no count per datagram"
		}
		s.log.Debug("the peer's window: what each datagram costs it", "charge", fmt.Sprintf("len%+d", l.charge),
			"adjusts", l.adjusts, "from", from)
	}
	if ev&capLifted != 0 {
		s.log.Debug("the peer holds more than the in-flight cap and returns no window: the cap is off until its adjusts are small again",
			"cap_kib", s.maxInFlight.Load()>>10)
	}
	if ev&learnGaveUp != 0 {
		s.log.Warn("the peer returned no window for more datagrams than sshvpn keeps to learn its count: it charges the most any peer does from now on, and if this peer counts less its window runs out in the end",
			"charge", fmt.Sprintf("len%+d", l.charge))
	}
	if ev&capRestored != 0 {
		s.log.Debug("the peer returns window early again: the in-flight cap is back", "cap_kib", s.maxInFlight.Load()>>10)
	}
}

// nextLen returns the size of the next queued message without consuming it.
// With wait it blocks until a message arrives; without, it returns 0 when
// none is queued. It returns io.EOF once the channel is closed and drained.
func (s *chanShim) nextLen(wait bool) (int, error) {
	b := s.pending
	b.L.Lock()
	defer b.L.Unlock()
	for {
		for e := b.head; e != nil; e = e.next {
			if len(e.buf) > 0 {
				return len(e.buf), nil
			}
			if e == b.tail {
				break
			}
		}
		if b.closed {
			return 0, io.EOF
		}
		if !wait {
			return 0, nil
		}
		b.Wait()
	}
}

// readMessage reads exactly the next message into p, which must hold
// nextLen bytes. Channel.Read does the copy and credits the window; it stops
// at the message's end because p is full.
func (s *chanShim) readMessage(p []byte) (int, error) {
	return io.ReadFull(s.ch, p)
}

// take moves the next message into p whole, blocking until one arrives,
// without returning its window to the peer: Receiver's callers do that
// themselves. It fails, taking nothing, when p cannot hold the message.
func (s *chanShim) take(p []byte) (int, error) {
	b := s.pending
	b.L.Lock()
	defer b.L.Unlock()
	for {
		for len(b.head.buf) == 0 && b.head != b.tail {
			b.head = b.head.next
		}
		if m := b.head.buf; len(m) > 0 {
			if len(m) > len(p) {
				return 0, fmt.Errorf("a message of %d bytes does not fit %d", len(m), len(p))
			}
			b.head.buf = nil
			return copy(p, m), nil
		}
		if b.closed {
			return 0, io.EOF
		}
		b.Wait()
	}
}

// queued counts the messages that arrived and were not taken yet.
func (s *chanShim) queued() int {
	b := s.pending
	b.L.Lock()
	defer b.L.Unlock()
	n := 0
	for e := b.head; e != nil; e = e.next {
		if len(e.buf) > 0 {
			n++
		}
	}
	return n
}

// close unblocks a reader waiting in nextLen and a writer waiting for window,
// for when the peer never answers our SSH_MSG_CHANNEL_CLOSE.
func (s *chanShim) close() {
	s.pending.L.Lock()
	s.pending.closed = true
	s.pending.Broadcast()
	s.pending.L.Unlock()
	s.win.L.Lock()
	s.win.closed = true
	s.win.Broadcast()
	if s.capTimer != nil {
		s.capTimer.Stop()
	}
	s.win.L.Unlock()
}

// Widening the window. x/crypto/ssh grants every channel a fixed 2 MiB
// window, which caps a stream at 2 MiB per round trip: 420 Mbit/s at
// 40 ms. Between two sshvpn endpoints the receiver grants more: it raises
// its own record of the window (myWindow, so its check of incoming data
// agrees) and tells the peer with one SSH_MSG_CHANNEL_WINDOW_ADJUST, sent
// through the transport as Disconnect does. x/crypto's adjustWindow then
// keeps the larger window topped up: above its 2 MiB it credits what each
// Read consumed at once.

// xChannelWindow is the part of ssh.channel that WidenWindow touches.
type xChannelWindow struct {
	mu       *sync.Mutex
	myWindow *uint32
	remoteID uint32
	// writeMu and sentClose are what x/crypto's own writes to the channel
	// go through: an adjust must not follow our CLOSE, for the peer
	// forgets the channel then and x/crypto ends the whole connection on
	// a message for a channel it does not know.
	writeMu   *sync.Mutex
	sentClose *bool
}

// channelWindowOf finds ch's window fields, checking their types first.
func channelWindowOf(ch ssh.Channel) (xChannelWindow, error) {
	v := reflect.ValueOf(ch)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct || v.Elem().Type().Name() != "channel" ||
		v.Elem().Type().PkgPath() != "golang.org/x/crypto/ssh" {
		return xChannelWindow{}, fmt.Errorf("%w: %T is not *ssh.channel", errShimShape, ch)
	}
	s := v.Elem()
	mu, win, rid := s.FieldByName("windowMu"), s.FieldByName("myWindow"), s.FieldByName("remoteId")
	wmu, closed := s.FieldByName("writeMu"), s.FieldByName("sentClose")
	if !mu.IsValid() || mu.Type() != reflect.TypeFor[sync.Mutex]() ||
		!win.IsValid() || win.Kind() != reflect.Uint32 || !rid.IsValid() || rid.Kind() != reflect.Uint32 ||
		!wmu.IsValid() || wmu.Type() != reflect.TypeFor[sync.Mutex]() || !closed.IsValid() || closed.Kind() != reflect.Bool {
		return xChannelWindow{}, fmt.Errorf("%w: windowMu, myWindow, remoteId, writeMu or sentClose missing or retyped", errShimShape)
	}
	return xChannelWindow{
		mu:        (*sync.Mutex)(unsafe.Pointer(mu.UnsafeAddr())),
		myWindow:  (*uint32)(unsafe.Pointer(win.UnsafeAddr())),
		remoteID:  uint32(rid.Uint()),
		writeMu:   (*sync.Mutex)(unsafe.Pointer(wmu.UnsafeAddr())),
		sentClose: (*bool)(unsafe.Pointer(closed.UnsafeAddr())),
	}, nil
}

// WidenWindow grants the peer extra bytes of window on ch, a channel of
// conn, beyond x/crypto's fixed 2 MiB. Only for a peer that reads the
// channel as a stream (the framed channel): it lets a long fat path carry
// more than 2 MiB per round trip. On error the peer was granted nothing.
func WidenWindow(conn ssh.Conn, ch ssh.Channel, extra uint32) error {
	t, err := transportOf(conn)
	if err != nil {
		return fmt.Errorf("widen channel window: %w", err)
	}
	w, err := channelWindowOf(ch)
	if err != nil {
		return fmt.Errorf("widen channel window: %w", err)
	}
	// byte SSH_MSG_CHANNEL_WINDOW_ADJUST, uint32 recipient channel,
	// uint32 bytes to add (RFC 4254 §5.2).
	p := make([]byte, 0, 9)
	p = append(p, 93)
	p = binary.BigEndian.AppendUint32(p, w.remoteID)
	p = binary.BigEndian.AppendUint32(p, extra)
	// As x/crypto's channel.writePacket: under writeMu, never after our
	// CLOSE. SizeWindow runs beside the tunnel, which may end first.
	// (x/crypto takes windowMu only without writeMu held, so nesting it
	// here cannot deadlock.)
	w.writeMu.Lock()
	defer w.writeMu.Unlock()
	if *w.sentClose {
		return errors.New("widen channel window: the channel is closed")
	}
	// Ours first: data the peer sends on the strength of the adjust must
	// find the window already open.
	w.mu.Lock()
	if *w.myWindow+extra < *w.myWindow {
		w.mu.Unlock()
		return errors.New("widen channel window: it would overflow")
	}
	*w.myWindow += extra
	w.mu.Unlock()
	if err := transportWritePacket(t, p); err != nil {
		return fmt.Errorf("widen channel window: %w", err)
	}
	return nil
}

// allowWindow raises x/crypto's count of what the peer of ch may still
// send by n, telling the peer nothing: for a receiver whose own count lets
// the peer send more than x/crypto's would (see Receiver.Allow).
func allowWindow(ch ssh.Channel, n uint32) error {
	w, err := channelWindowOf(ch)
	if err != nil {
		return fmt.Errorf("allow channel window: %w", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if *w.myWindow+n < *w.myWindow {
		return errors.New("allow channel window: it would overflow")
	}
	*w.myWindow += n
	return nil
}

// myWindowOf is x/crypto's count of what the peer of ch may still send.
func myWindowOf(ch ssh.Channel) (uint32, error) {
	w, err := channelWindowOf(ch)
	if err != nil {
		return 0, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return *w.myWindow, nil
}

// DisconnectByApplication is SSH_DISCONNECT_BY_APPLICATION, the reason ssh
// gives when the user ends the session.
const DisconnectByApplication = 11

// disconnectWait bounds the wait to send SSH_MSG_DISCONNECT.
const disconnectWait = time.Second

// transportWritePacket is (*ssh.handshakeTransport).writePacket: it queues
// the message during a key exchange and otherwise writes it at once.
//
//go:linkname transportWritePacket golang.org/x/crypto/ssh.(*handshakeTransport).writePacket
func transportWritePacket(t unsafe.Pointer, p []byte) error

var errTransportShape = errors.New("x/crypto/ssh connection internals changed shape")

// auditedXCrypto is the golang.org/x/crypto whose handshakeTransport.
// writePacket(p []byte) error transportWritePacket was checked against.
// Upgrading x/crypto means reading it again and updating this.
const auditedXCrypto = "v0.59.0"

// transportOf finds the *ssh.handshakeTransport under c, a *ssh.Client, an
// *ssh.ServerConn or the ssh.Conn of either.
func transportOf(c ssh.Conn) (unsafe.Pointer, error) {
	// A test binary carries no module versions; TestAuditedXCrypto holds
	// go.mod to the audited one instead.
	if v := xcryptoVersion(); v != auditedXCrypto && v != "(unknown version)" {
		return nil, fmt.Errorf("%w: x/crypto %s, not the %s whose writePacket was read", errTransportShape, v, auditedXCrypto)
	}
	v := reflect.ValueOf(c)
	switch cc := c.(type) {
	case *ssh.Client:
		v = reflect.ValueOf(cc.Conn)
	case *ssh.ServerConn:
		v = reflect.ValueOf(cc.Conn)
	}
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("%w: %T", errTransportShape, c)
	}
	s := v.Elem()
	if t := s.Type(); t.Name() != "connection" || t.PkgPath() != "golang.org/x/crypto/ssh" {
		return nil, fmt.Errorf("%w: %s is not ssh.connection", errTransportShape, t)
	}
	tr := s.FieldByName("transport")
	if !tr.IsValid() || tr.Kind() != reflect.Interface || tr.IsNil() {
		return nil, fmt.Errorf("%w: no transport", errTransportShape)
	}
	h := tr.Elem()
	if h.Kind() != reflect.Pointer || h.Type().Elem().Name() != "handshakeTransport" ||
		h.Type().Elem().PkgPath() != "golang.org/x/crypto/ssh" {
		return nil, fmt.Errorf("%w: transport is %s", errTransportShape, h.Type())
	}
	if _, ok := h.Type().MethodByName("writePacket"); ok {
		// Unexported methods are not listed; one that is would mean a
		// different type under the same name.
		return nil, fmt.Errorf("%w: writePacket is exported", errTransportShape)
	}
	return h.UnsafePointer(), nil
}

// Disconnect sends SSH_MSG_DISCONNECT with reason and message, then closes
// c. The message is best effort: a broken connection is closed all the
// same, and the error says why it could not be sent.
func Disconnect(c ssh.Conn, reason uint32, message string) error {
	t, err := transportOf(c)
	if err == nil {
		// byte SSH_MSG_DISCONNECT, uint32 reason, string description,
		// string language tag.
		p := make([]byte, 0, 13+len(message))
		p = append(p, 1)
		p = binary.BigEndian.AppendUint32(p, reason)
		p = binary.BigEndian.AppendUint32(p, uint32(len(message)))
		p = append(p, message...)
		p = binary.BigEndian.AppendUint32(p, 0)
		// A peer that stopped reading must not hold the exit: the
		// write gets a moment, then Close unblocks it.
		sent := make(chan error, 1)
		go func() { sent <- transportWritePacket(t, p) }()
		select {
		case err = <-sent:
		case <-time.After(disconnectWait):
			err = errors.New("the peer is not reading")
		}
	}
	c.Close()
	if err != nil {
		return fmt.Errorf("send disconnect: %w", err)
	}
	return nil
}
