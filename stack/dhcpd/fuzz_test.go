package dhcpd

import (
	"errors"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// FuzzHandle feeds Handle any bytes and checks that it never panics, that
// an error comes without a reply and wraps ErrMalformed, and that every
// reply parses, answers the request's xid and chaddr, and is addressed.
// The seeds in testdata/fuzz/FuzzHandle are one message of each kind the
// unit tests send.
func FuzzHandle(f *testing.F) {
	f.Add(build(f, dhcpv4.MessageTypeDiscover, withClientID))
	f.Add(build(f, dhcpv4.MessageTypeRequest, ours, wantOther, broadcast))
	f.Add([]byte{})
	s := newServer(f, testConfig())
	f.Fuzz(func(t *testing.T, msg []byte) {
		r, ok, err := s.Handle(msg, clock)
		if err != nil {
			if ok || !errors.Is(err, ErrMalformed) {
				t.Fatalf("Handle = %v, %v: an error comes alone and wraps ErrMalformed", ok, err)
			}
			return
		}
		if !ok {
			return
		}
		req, err := dhcpv4.FromBytes(msg)
		if err != nil {
			t.Fatalf("answered a request that does not parse: %v", err)
		}
		d, err := dhcpv4.FromBytes(r.Payload)
		if err != nil {
			t.Fatalf("reply does not parse: %v\n%x", err, r.Payload)
		}
		if d.OpCode != dhcpv4.OpcodeBootReply || d.TransactionID != req.TransactionID || string(d.ClientHWAddr) != string(req.ClientHWAddr) {
			t.Fatalf("reply %s does not answer %s", d.Summary(), req.Summary())
		}
		if !r.Dst.Is4() || r.Dst.IsUnspecified() {
			t.Fatalf("reply sent to %v", r.Dst)
		}
		if typ := d.MessageType(); typ != dhcpv4.MessageTypeOffer && typ != dhcpv4.MessageTypeAck && typ != dhcpv4.MessageTypeNak {
			t.Fatalf("reply of type %v", typ)
		}
	})
}
