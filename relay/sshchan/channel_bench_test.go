package sshchan

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"testing"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/offload"
	"github.com/sshvpn/sshvpn/relay/wire"
)

// openSSHPeer makes Channel use the shim and take the peer for OpenSSH,
// which returns window early: the cap holds. Its charge is learnt from the
// adjusts of the x/crypto receiver at the other end: len.
var openSSHPeer = []byte("SSH-2.0-OpenSSH_9.2p1")

// benchLocal is the peer's own network in these tests: tcpTrain toward
// 198.18.3.2 is merged, toward 198.18.9.9 routed.
var benchLocal = []netip.Prefix{netip.MustParsePrefix("198.18.3.0/24")}

// plainBatch is 64 IPv4 packets of 1500 bytes.
func plainBatch() [][]byte {
	pkts := make([][]byte, batch)
	for i := range pkts {
		pkts[i] = ipPacket(1500, byte(i))
	}
	return pkts
}

// messagesPerBatch is how many SSH messages tx.Write sends for bufs.
func messagesPerBatch(tx *Channel, bufs [][]byte) int {
	if tx.merge == nil {
		return len(bufs)
	}
	return len(tx.merge.Coalesce(bufs, relay.Headroom, make([][]byte, 0, len(bufs))))
}

// BenchmarkChannel writes batches of 64 packets through a real x/crypto/ssh
// channel pair toward an OpenSSH peer while a goroutine drains the other
// end with Channel.Read: plain 1500-byte packets; TCP segments of 1448
// bytes toward the peer's own network, which Write merges into packets of
// up to MergeSize (11 segments each, so 6 messages per batch); and the same
// segments toward a network the peer routes on, sent one message each.
// An op is one Write of the batch; the timer stops once the reader has
// everything. msgs/op is the SSH messages one batch took. allocs/op counts
// both ends, x/crypto's own per-message allocations included.
func BenchmarkChannel(b *testing.B) {
	mine, _ := tcpTrain(batch, 1448, [4]byte{198, 18, 3, 2})
	routed, _ := tcpTrain(batch, 1448, [4]byte{198, 18, 9, 9})
	for _, bc := range []struct {
		name  string
		pkts  [][]byte
		local []netip.Prefix
	}{
		{"plain/1500", plainBatch(), nil},
		{"merged/1448x64", mine, benchLocal},
		{"routed/1448x64", routed, benchLocal},
	} {
		b.Run(bc.name, func(b *testing.B) { benchChannel(b, bc.pkts, bc.local) })
	}
}

func benchChannel(b *testing.B, pkts [][]byte, local []netip.Prefix) {
	t := &testing.T{}
	a, s, conn := connChannelPair(t, wire.ChannelType)
	defer conn.Close()
	tx, rx := newMergePair(b, a, s, local, nil)
	if local != nil && tx.merge == nil {
		b.Fatal("Channel does not merge toward Config.Local")
	}
	bufs := withHeadroom(pkts...)
	per := messagesPerBatch(tx, bufs)
	size := 0
	for _, p := range pkts {
		size += len(p)
	}

	want := b.N * per
	done := make(chan error, 1)
	go func() {
		rbufs := make([][]byte, batch)
		for i := range rbufs {
			rbufs[i] = make([]byte, relay.Headroom+MergeSize)
		}
		sizes := make([]int, batch)
		for got := 0; got < want; {
			n, err := rx.Read(rbufs, sizes, relay.Headroom)
			if err != nil {
				done <- fmt.Errorf("Read after %d of %d packets: %w", got, want, err)
				return
			}
			got += n
		}
		done <- nil
	}()

	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if n, err := tx.Write(bufs, relay.Headroom); n != len(bufs) || err != nil {
			b.Fatalf("Write: %d of %d packets, %v", n, len(bufs), err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(per), "msgs/op")
}

// wireFrames is the SSH messages tx.Write sends for bufs, each a copy:
// the address family word and the packet, merged or not.
func wireFrames(t *testing.T, tx *Channel, bufs [][]byte) [][]byte {
	t.Helper()
	pkts, offset := bufs, relay.Headroom
	if tx.merge != nil {
		pkts, offset = tx.merge.Coalesce(bufs, relay.Headroom, make([][]byte, 0, len(bufs))), offload.HdrLen
	}
	var frames [][]byte
	for _, p := range pkts {
		f, err := tx.encode(p, offset)
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, bytes.Clone(f))
	}
	return frames
}

// Channel.Write of a 64-packet batch allocates nothing of its own, merged
// or not. x/crypto/ssh does allocate per message, so the test compares
// with a baseline: the same SSH messages written with raw ch.Write on the
// same x/crypto channel. Each measured call writes perCall batches, each
// followed by a wait until the reader (a Channel on the other end) has read
// all of it, so both ends' allocations are in the count, the same for
// both; only the receiver's window adjusts, sent when its reads happen to
// cross x/crypto's threshold, vary from run to run (by about 0.2 per
// batch), hence the least of three rounds and a margin of half an
// allocation: one allocation per Write would be a whole one more.
//
// Measured (x/crypto v0.59.0, go1.26, aes128-gcm, -memprofilerate=1 for
// who allocates): x/crypto's sending side allocates nothing per message
// once its packet buffers have grown, and neither does Channel.Write,
// merged or not: not Coalesce, not encode, not writeDatagram. Every
// allocation is on the receiving side: two per message
// (connectionState.readPacket's copy of the packet and buffer.write's
// element) and about 8 per window adjust (~one per 96 KiB read: Marshal
// on the receiver, decode and the packet copy on the sender). Per batch:
// plain, 64 messages, 136.0 for x/crypto alone and 136.0 for Channel.Write
// (2.12 per message); merged, 64 segments in 6 messages, 19.9-20.0 for
// both over 30 runs (3.3 per message; single rounds spread 19.8-20.2).
func TestChannelWriteAllocs(t *testing.T) {
	const perCall = 10
	mine, _ := tcpTrain(batch, 1448, [4]byte{198, 18, 3, 2})
	perMerged := (MergeSize - 40) / 1448
	for _, tc := range []struct {
		name  string
		pkts  [][]byte
		local []netip.Prefix
		msgs  int // SSH messages per batch
	}{
		{"plain", plainBatch(), nil, batch},
		{"merged", mine, benchLocal, (batch + perMerged - 1) / perMerged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, s := channelPair(t)
			tx, rx := newMergePair(t, a, s, tc.local, nil)
			bufs := withHeadroom(tc.pkts...)
			frames := wireFrames(t, tx, bufs)
			if len(frames) != tc.msgs {
				t.Fatalf("a batch takes %d messages, want %d", len(frames), tc.msgs)
			}

			// The reader checks every packet against the frames and says
			// when it has a whole batch.
			drained, dead := make(chan struct{}), make(chan struct{})
			var readErr error
			go func() {
				defer close(dead)
				rbufs := make([][]byte, batch)
				for i := range rbufs {
					rbufs[i] = make([]byte, relay.Headroom+MergeSize)
				}
				sizes := make([]int, batch)
				k := 0
				for {
					n, err := rx.Read(rbufs, sizes, relay.Headroom)
					if err != nil {
						if !errors.Is(err, net.ErrClosed) && err != io.EOF {
							readErr = err
						}
						return
					}
					for i := range n {
						if !bytes.Equal(rbufs[i][relay.Headroom:relay.Headroom+sizes[i]], frames[k][4:]) {
							readErr = fmt.Errorf("packet %d of a batch: %d bytes, not the %d-byte frame sent", k, sizes[i], len(frames[k])-4)
							return
						}
						if k++; k == len(frames) {
							k = 0
							drained <- struct{}{}
						}
					}
				}
			}()
			var writeErr error
			wait := func() {
				select {
				case <-drained:
				case <-dead:
				}
			}
			raw := func() {
				for range perCall {
					for _, f := range frames {
						if _, err := a.Write(f); err != nil {
							writeErr = err
						}
					}
					wait()
				}
			}
			viaChannel := func() {
				for range perCall {
					if n, err := tx.Write(bufs, relay.Headroom); n != len(bufs) || err != nil {
						writeErr = fmt.Errorf("Write: %d of %d, %v", n, len(bufs), err)
					}
					wait()
				}
			}

			// The least of a few rounds, per batch, to 1/perCall.
			base, got := math.Inf(1), math.Inf(1)
			for range 3 {
				base = min(base, testing.AllocsPerRun(20, raw)/perCall)
				got = min(got, testing.AllocsPerRun(20, viaChannel)/perCall)
			}
			rx.Close()
			<-dead
			if writeErr != nil {
				t.Fatal(writeErr)
			}
			if readErr != nil {
				t.Fatal(readErr)
			}
			t.Logf("%d packets in %d messages: x/crypto alone %.1f allocations per batch (%.2f per message), Channel.Write %.1f",
				len(bufs), len(frames), base, base/float64(len(frames)), got)
			if got-base >= 0.5 {
				t.Errorf("Channel.Write allocates %v per batch, %.1f more than the same messages written straight on x/crypto",
					got, got-base)
			}
		})
	}
}
