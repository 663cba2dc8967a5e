package sshchantest

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/sshchan"
	"github.com/sshvpn/sshvpn/relay/wire"
)

// maxPacket is the peer's maximum packet, x/crypto's, which OpenSSH's
// early adjusts count in.
const maxPacket = 32 << 10

// Peer is one end of a tun@openssh.com channel that receives as its Policy
// says and sends with sshvpn's Channel. It implements relay.Device. Read
// takes datagrams, which is when the peer counts them consumed and may
// return window; it fails, for good, when the sender overran the window.
type Peer struct {
	pol  Policy
	mode relay.Mode
	conn ssh.Conn
	rx   *sshchan.Receiver
	tx   *sshchan.Channel

	// The window as the peer counts it; owned by Read.
	window     int64 // granted at open
	debited    int64 // what the datagrams taken cost
	returned   int64
	unreturned int64 // debited since the last adjust
	taken      int64 // datagrams
	// Adjusts the sender may not have had when a datagram was sent: an
	// adjust counts for a datagram only if it was sent before the
	// datagram arrived.
	marks []mark
	avail int64 // what was returned before the datagram taken last arrived

	adjusts, datagrams, bytes atomic.Int64

	mu  sync.Mutex
	err error // the sender's overrun
}

// mark is an adjust: how many datagrams had arrived when it was sent, and
// what had been returned all told with it.
type mark struct{ arrived, total int64 }

var _ relay.Device = (*Peer)(nil)

// slack is what x/crypto's own count of the window is loosened by: the
// Peer checks every datagram against its own count, which may let the
// sender send more than x/crypto's would.
const slack = 2 << 20

// newPeer wraps ch, a tun@openssh.com channel of conn in mode, whose other
// end announced remoteVersion.
func newPeer(conn ssh.Conn, ch ssh.Channel, pol Policy, mode relay.Mode, remoteVersion []byte) (*Peer, error) {
	rx, err := sshchan.NewReceiver(conn, ch)
	if err != nil {
		return nil, err
	}
	if err := rx.Allow(slack); err != nil {
		return nil, err
	}
	tx, err := sshchan.New(ch, sshchan.Config{Mode: mode, MTU: MTU, PeerVersion: remoteVersion})
	if err != nil {
		return nil, err
	}
	return &Peer{pol: pol, mode: mode, conn: conn, rx: rx, tx: tx, window: int64(rx.Window())}, nil
}

// MTU is the largest packet a Peer takes: what OpenSSH's 16 KiB tun
// buffer holds, for a sender that merges segments toward an OpenSSH peer.
const MTU = sshchan.MergeSize

// Read implements relay.Device.
func (p *Peer) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	start := offset
	if p.mode == relay.PointToPoint {
		start -= 4 // the address family word lands in the headroom
	}
	n := 0
	for n < len(bufs) && (n == 0 || p.rx.Queued() > 0) {
		m, err := p.rx.Next(bufs[n][start:])
		if err != nil {
			if n > 0 {
				break
			}
			return 0, err
		}
		if err := p.count(m); err != nil {
			return n, err
		}
		msg := bufs[n][start : start+m]
		if p.mode == relay.PointToPoint {
			pkt, err := wire.DecodeL3(msg)
			if err != nil {
				return n, fmt.Errorf("datagram %d: %w", p.taken, err)
			}
			m = len(pkt)
		}
		sizes[n] = m
		p.bytes.Add(int64(m))
		n++
	}
	p.datagrams.Add(int64(n))
	if p.pol.Charge < 0 {
		// x/crypto charged len for each; the peer charges less.
		if err := p.rx.Allow(uint32(-p.pol.Charge * n)); err != nil {
			return n, err
		}
	}
	return n, p.giveBack()
}

// count charges a datagram of m bytes to the window, first checking that
// the window held it when it arrived.
func (p *Peer) count(m int) error {
	p.taken++
	for len(p.marks) > 0 && p.marks[0].arrived < p.taken {
		p.avail = p.marks[0].total
		p.marks = p.marks[1:]
	}
	need := int64(m + max(p.pol.Charge, 0))
	if left := p.window + p.avail - p.debited; need > left {
		err := fmt.Errorf("sshchantest %s: datagram %d of %d bytes arrived with %d bytes of window left (len%+d a datagram): the sender overran the window",
			p.pol.Name, p.taken, m, left, p.pol.Charge)
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		return err
	}
	cost := int64(m + p.pol.Charge)
	p.debited += cost
	p.unreturned += cost
	return nil
}

// giveBack returns what was consumed when the policy says so.
func (p *Peer) giveBack() error {
	left := p.window + p.returned - p.debited
	due := left < p.window/2 || p.window-left > 3*maxPacket
	if p.pol.ReturnBelow > 0 {
		due = left < p.window/int64(p.pol.ReturnBelow)
	}
	if p.unreturned == 0 || !due {
		return nil
	}
	// Counted before the adjust goes: a datagram counted here arrived
	// before the sender could have had it.
	arrived := p.taken + int64(p.rx.Queued())
	if err := p.rx.Return(uint32(p.unreturned)); err != nil {
		return err
	}
	p.returned += p.unreturned
	p.unreturned = 0
	p.marks = append(p.marks, mark{arrived, p.returned})
	p.adjusts.Add(1)
	return nil
}

// Write implements relay.Device: sshvpn's Channel sends.
func (p *Peer) Write(bufs [][]byte, offset int) (int, error) { return p.tx.Write(bufs, offset) }

// BatchSize implements relay.Device.
func (p *Peer) BatchSize() int { return p.tx.BatchSize() }

// MTU implements relay.Device.
func (p *Peer) MTU() int { return MTU }

// Close implements relay.Device: it closes the channel and the connection.
func (p *Peer) Close() error {
	err := p.tx.Close()
	if cerr := p.conn.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) && err == nil {
		err = cerr
	}
	return err
}

// Err is the sender's overrun of the window, if the peer saw one.
func (p *Peer) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Stats is what a Peer received.
type Stats struct {
	Datagrams, Bytes int64 // packets taken, and their bytes
	Adjusts          int64 // window adjusts sent
}

// Stats says what the peer has received so far.
func (p *Peer) Stats() Stats {
	return Stats{Datagrams: p.datagrams.Load(), Bytes: p.bytes.Load(), Adjusts: p.adjusts.Load()}
}

// Queued counts the datagrams that arrived and were not read yet.
func (p *Peer) Queued() int { return p.rx.Queued() }

// Policy is the peer's.
func (p *Peer) Policy() Policy { return p.pol }
