package sshchan

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay"
)

// chunkChannel is an ssh.Channel whose Read returns the given chunks one by
// one, as x/crypto's Read returns several queued messages at once.
type chunkChannel struct {
	ssh.Channel
	chunks [][]byte
}

func (c *chunkChannel) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	if c.chunks[0] = c.chunks[0][n:]; len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

func (c *chunkChannel) Close() error { return nil }

func l3Datagram(payload string) []byte {
	p := make([]byte, 4+20+len(payload))
	binary.BigEndian.PutUint32(p, 2)
	p[4] = 0x45
	binary.BigEndian.PutUint16(p[6:], uint16(20+len(payload)))
	copy(p[24:], payload)
	return p
}

// Without the shim, datagrams are re-framed from their headers: several in
// one read, one split across reads, and after bytes that cannot be framed
// the stream picks up again at the next read.
func TestChannelStreamMode(t *testing.T) {
	a, b, c, d := l3Datagram("first"), l3Datagram("second, longer"), l3Datagram("third"), l3Datagram("fourth")
	joined := append(append([]byte{}, a...), b...)
	fake := &chunkChannel{chunks: [][]byte{
		joined,         // two datagrams in one read
		c[:10], c[10:], // one datagram split across reads
		append([]byte{0, 0, 0, 99}, 1, 2, 3), // garbage: an unknown family
		d,
	}}
	var in relay.Counters
	ch := newStream(fake, Config{Mode: relay.PointToPoint, MTU: 1500, In: &in})
	bufs := [][]byte{make([]byte, 2000), make([]byte, 2000), make([]byte, 2000), make([]byte, 2000)}
	sizes := make([]int, len(bufs))
	var got [][]byte
	for len(got) < 4 {
		n, err := ch.Read(bufs, sizes, relay.Headroom)
		if err != nil {
			t.Fatalf("after %d packets: %v", len(got), err)
		}
		for i := range n {
			got = append(got, append([]byte(nil), bufs[i][relay.Headroom:relay.Headroom+sizes[i]]...))
		}
	}
	for i, want := range [][]byte{a, b, c, d} {
		if !bytes.Equal(got[i], want[4:]) {
			t.Errorf("packet %d: got %x, want %x", i, got[i], want[4:])
		}
	}
	if s := in.Snapshot(); s.Dropped() != 1 {
		t.Errorf("drops %v, want the one garbage read", s.Drops)
	}
}
