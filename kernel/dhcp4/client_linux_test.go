//go:build linux

package dhcp4

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"

	"github.com/sshvpn/sshvpn/kernel/internal/kerneltest"
)

// testServer is a DHCP server on its end of a veth: it offers
// 198.18.2.120/24 to every DISCOVER, answers every REQUEST with the ACK
// that ack makes, and counts the messages it is sent by type.
type testServer struct {
	in, out net.PacketConn
	ack     []dhcpv4.Modifier
	mu      sync.Mutex
	seen    map[dhcpv4.MessageType]int
}

var serverID = net.ParseIP("198.18.2.1").To4()

// startServer serves on ifname, in the calling thread's namespace, until
// the test ends.
func startServer(t *testing.T, ifname string, ack ...dhcpv4.Modifier) *testServer {
	t.Helper()
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := packet.Listen(ifi, packet.Datagram, unix.ETH_P_IP, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{
		in:   nclient4.NewBroadcastUDPConn(raw, &net.UDPAddr{Port: nclient4.ServerPort}),
		out:  nclient4.NewBroadcastUDPConn(raw, &net.UDPAddr{IP: serverID, Port: nclient4.ServerPort}),
		ack:  ack,
		seen: map[dhcpv4.MessageType]int{},
	}
	done := make(chan struct{})
	t.Cleanup(func() { raw.Close(); <-done })
	go func() {
		defer close(done)
		s.serve(t)
	}()
	return s
}

func (s *testServer) serve(t *testing.T) {
	buf := make([]byte, 1500)
	for {
		n, _, err := s.in.ReadFrom(buf)
		if err != nil {
			return
		}
		req, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			continue
		}
		s.mu.Lock()
		s.seen[req.MessageType()]++
		s.mu.Unlock()
		mods := []dhcpv4.Modifier{dhcpv4.WithYourIP(net.ParseIP("198.18.2.120")), dhcpv4.WithServerIP(serverID),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(serverID)), dhcpv4.WithNetmask(net.CIDRMask(24, 32))}
		switch req.MessageType() {
		case dhcpv4.MessageTypeDiscover:
			mods = append(mods, dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer), dhcpv4.WithLeaseTime(600))
		case dhcpv4.MessageTypeRequest:
			mods = append(append(mods, dhcpv4.WithMessageType(dhcpv4.MessageTypeAck)), s.ack...)
		default:
			continue
		}
		reply, err := dhcpv4.NewReplyFromRequest(req, mods...)
		if err != nil {
			t.Errorf("DHCP reply: %v", err)
			return
		}
		s.out.WriteTo(reply.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: nclient4.ClientPort})
	}
}

func (s *testServer) count(m dhcpv4.MessageType) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[m]
}

// runClient runs a client on ifname, which usable (if not nil) checks,
// for d, and returns the leases it applied and its log.
func runClient(t *testing.T, ifname string, usable func(*Lease) error, d time.Duration) ([]*Lease, string) {
	t.Helper()
	var log logBuffer
	c, err := Open(ifname, usable, slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var applied []*Lease
	err = c.Run(ctx, func(l *Lease) error {
		applied = append(applied, l)
		return nil
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run: %v, want the context's end", err)
	}
	return applied, log.String()
}

// vethPair makes the veth dhc0 (the client's) and dhs0 (the server's), up.
func vethPair(t *testing.T) {
	kerneltest.Run(t, "ip", "link", "add", "dhc0", "type", "veth", "peer", "name", "dhs0")
	kerneltest.Run(t, "ip", "link", "set", "dhc0", "up")
	kerneltest.Run(t, "ip", "link", "set", "dhs0", "up")
}

// An ACK the client cannot use (here: no lease time) is not declined,
// which RFC 2131 keeps for an address in use and which makes a server
// hold the address back: the client does without a lease, and asks again
// later.
func TestClientUnusableACKNotDeclined(t *testing.T) {
	kerneltest.RequireTool(t, "ip")
	kerneltest.InNewNS(t, func() {
		vethPair(t)
		s := startServer(t, "dhs0") // ACKs with no lease time
		applied, log := runClient(t, "dhc0", nil, 3500*time.Millisecond)
		if len(applied) > 0 {
			t.Errorf("leases applied from an ACK without a lease time: %v", applied)
		}
		if n := s.count(dhcpv4.MessageTypeDecline); n > 0 {
			t.Errorf("the client sent %d DHCPDECLINE for an ACK it could not read", n)
		}
		// Asked again after 1 s and 2 s more, not at once.
		if n := s.count(dhcpv4.MessageTypeRequest); n < 2 || n > 3 {
			t.Errorf("%d REQUESTs in 3.5 s, want 2 or 3 (asking again, backing off):\n%s", n, log)
		}
	})
}

// A lease the caller refuses is neither applied nor declined.
func TestClientRefusedLease(t *testing.T) {
	kerneltest.RequireTool(t, "ip")
	kerneltest.InNewNS(t, func() {
		vethPair(t)
		s := startServer(t, "dhs0", dhcpv4.WithLeaseTime(600))
		refuse := func(l *Lease) error { return errors.New("its subnet holds the SSH connection's address") }
		applied, log := runClient(t, "dhc0", refuse, 2500*time.Millisecond)
		if len(applied) > 0 {
			t.Errorf("refused leases applied: %v", applied)
		}
		if n := s.count(dhcpv4.MessageTypeDecline); n > 0 {
			t.Errorf("the client sent %d DHCPDECLINE for a lease it refused", n)
		}
		if n := s.count(dhcpv4.MessageTypeRequest); n < 1 {
			t.Errorf("no REQUEST reached the server:\n%s", log)
		}
		if !strings.Contains(log, "refused") || !strings.Contains(log, "SSH connection") {
			t.Errorf("the log does not say the lease was refused, and why:\n%s", log)
		}

		// And a lease it takes is applied.
		applied, log = runClient(t, "dhc0", nil, 1500*time.Millisecond)
		if len(applied) != 1 || applied[0].Addr.String() != "198.18.2.120/24" {
			t.Errorf("applied %v, want the lease of 198.18.2.120/24:\n%s", applied, log)
		}
	})
}
