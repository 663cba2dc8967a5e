package sshchan

// Leaving politely. RFC 4253 §11.1: a side that ends the connection sends
// SSH_MSG_DISCONNECT first, and ssh does on exit ("disconnected by user",
// reason 11). x/crypto/ssh has no way to send it: Conn.Close drops the
// socket, and sshd then logs a broken connection rather than a user who
// left. Disconnect reaches the connection's transport, the way
// chanwindow.go reaches a channel's window, and writes the message through
// the transport's own writePacket, so it is encrypted and sequenced like
// any other. If x/crypto/ssh changes shape, Disconnect only closes;
// TestDisconnectReachesPeer fails first.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"time"
	"unsafe"

	"golang.org/x/crypto/ssh"
)

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

// transportOf finds the *ssh.handshakeTransport under c, a *ssh.Client or
// the ssh.Conn of one.
func transportOf(c ssh.Conn) (unsafe.Pointer, error) {
	v := reflect.ValueOf(c)
	if cl, ok := c.(*ssh.Client); ok {
		v = reflect.ValueOf(cl.Conn)
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
