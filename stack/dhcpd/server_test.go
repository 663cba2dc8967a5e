package dhcpd

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

var (
	leaseAddr  = netip.MustParseAddr("198.18.3.9")
	serverAddr = netip.MustParseAddr("198.18.0.1")
	otherAddr  = netip.MustParseAddr("198.18.7.7")
	clientMAC  = net.HardwareAddr{0x02, 0x00, 0x5e, 0x10, 0x00, 0x09}
	xid        = dhcpv4.TransactionID{0xde, 0xad, 0xbe, 0xef}
	clock      = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
)

func testConfig() Config {
	return Config{
		Lease:    netip.PrefixFrom(leaseAddr, 16),
		ServerID: serverAddr,
		DNS:      []netip.Addr{serverAddr, netip.MustParseAddr("2001:2::1"), netip.MustParseAddr("198.18.0.2")},
		Domains:  []string{"tunnel.test.", "corp.test"},
		MTU:      1400,
	}
}

func newServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// build returns a client's message of type typ from clientMAC, changed by mods.
func build(t testing.TB, typ dhcpv4.MessageType, mods ...dhcpv4.Modifier) []byte {
	t.Helper()
	base := []dhcpv4.Modifier{dhcpv4.WithTransactionID(xid), dhcpv4.WithHwAddr(clientMAC)}
	if typ != dhcpv4.MessageTypeNone {
		base = append(base, dhcpv4.WithMessageType(typ))
	}
	d, err := dhcpv4.New(append(base, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return d.ToBytes()
}

func ip(a netip.Addr) net.IP { return a.AsSlice() }

var (
	broadcast = dhcpv4.WithBroadcast(true)
	ours      = dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ip(serverAddr)))
	theirs    = dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ip(netip.MustParseAddr("198.18.0.254"))))
	wantLease = dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip(leaseAddr)))
	wantOther = dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip(otherAddr)))
	fromLease = dhcpv4.WithClientIP(ip(leaseAddr))
	fromOther = dhcpv4.WithClientIP(ip(otherAddr))
)

// counter picks one of the Stats.
type counter func(*Stats) *atomic.Uint64

var (
	offers    counter = func(s *Stats) *atomic.Uint64 { return &s.Offers }
	acks      counter = func(s *Stats) *atomic.Uint64 { return &s.Acks }
	naks      counter = func(s *Stats) *atomic.Uint64 { return &s.Naks }
	releases  counter = func(s *Stats) *atomic.Uint64 { return &s.Releases }
	declines  counter = func(s *Stats) *atomic.Uint64 { return &s.Declines }
	informs   counter = func(s *Stats) *atomic.Uint64 { return &s.Informs }
	malformed counter = func(s *Stats) *atomic.Uint64 { return &s.Malformed }
	ignored   counter = func(s *Stats) *atomic.Uint64 { return &s.Ignored }
	counters          = map[string]counter{"offers": offers, "acks": acks, "naks": naks, "releases": releases, "declines": declines, "informs": informs, "malformed": malformed, "ignored": ignored}
)

// TestHandle walks every branch of Handle once: the reply's type, where it
// goes, and the one counter it moves.
func TestHandle(t *testing.T) {
	tests := []struct {
		name    string
		msg     []byte
		want    dhcpv4.MessageType // MessageTypeNone: no reply
		dst     netip.Addr
		counted counter
	}{
		{"discover", build(t, dhcpv4.MessageTypeDiscover), dhcpv4.MessageTypeOffer, leaseAddr, offers},
		{"discover broadcast flag", build(t, dhcpv4.MessageTypeDiscover, broadcast), dhcpv4.MessageTypeOffer, broadcastAddr, offers},
		{"discover asking for another address", build(t, dhcpv4.MessageTypeDiscover, wantOther), dhcpv4.MessageTypeOffer, leaseAddr, offers},
		{"discover from a non-Ethernet chaddr", build(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithHWType(iana.HWTypeInfiniband)), dhcpv4.MessageTypeOffer, broadcastAddr, offers},
		{"discover from a multicast chaddr", build(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithHwAddr(net.HardwareAddr{1, 0, 0x5e, 0, 0, 1})), dhcpv4.MessageTypeOffer, broadcastAddr, offers},

		{"selecting us", build(t, dhcpv4.MessageTypeRequest, ours, wantLease), dhcpv4.MessageTypeAck, leaseAddr, acks},
		{"selecting us, broadcast flag", build(t, dhcpv4.MessageTypeRequest, ours, wantLease, broadcast), dhcpv4.MessageTypeAck, broadcastAddr, acks},
		{"selecting us for another address", build(t, dhcpv4.MessageTypeRequest, ours, wantOther), dhcpv4.MessageTypeNak, broadcastAddr, naks},
		{"selecting another server", build(t, dhcpv4.MessageTypeRequest, theirs, wantLease), dhcpv4.MessageTypeNone, netip.Addr{}, ignored},
		{"init-reboot with the lease", build(t, dhcpv4.MessageTypeRequest, wantLease), dhcpv4.MessageTypeAck, leaseAddr, acks},
		{"init-reboot with the lease, broadcast flag", build(t, dhcpv4.MessageTypeRequest, wantLease, broadcast), dhcpv4.MessageTypeAck, broadcastAddr, acks},
		{"init-reboot with another address", build(t, dhcpv4.MessageTypeRequest, wantOther), dhcpv4.MessageTypeNak, broadcastAddr, naks},
		{"renewing the lease", build(t, dhcpv4.MessageTypeRequest, fromLease), dhcpv4.MessageTypeAck, leaseAddr, acks},
		// RFC 2131 4.1: ciaddr before the broadcast flag.
		{"rebinding the lease, broadcast flag", build(t, dhcpv4.MessageTypeRequest, fromLease, broadcast), dhcpv4.MessageTypeAck, leaseAddr, acks},
		{"renewing with a server id", build(t, dhcpv4.MessageTypeRequest, fromLease, ours), dhcpv4.MessageTypeAck, leaseAddr, acks},
		{"renewing another address", build(t, dhcpv4.MessageTypeRequest, fromOther), dhcpv4.MessageTypeNak, broadcastAddr, naks},
		{"request naming no address", build(t, dhcpv4.MessageTypeRequest), dhcpv4.MessageTypeNone, netip.Addr{}, ignored},

		{"release", build(t, dhcpv4.MessageTypeRelease, fromLease, ours), dhcpv4.MessageTypeNone, netip.Addr{}, releases},
		{"release without a server id", build(t, dhcpv4.MessageTypeRelease, fromLease), dhcpv4.MessageTypeNone, netip.Addr{}, releases},
		{"release of another address", build(t, dhcpv4.MessageTypeRelease, fromOther, ours), dhcpv4.MessageTypeNone, netip.Addr{}, ignored},
		{"release to another server", build(t, dhcpv4.MessageTypeRelease, fromLease, theirs), dhcpv4.MessageTypeNone, netip.Addr{}, ignored},
		{"decline", build(t, dhcpv4.MessageTypeDecline, wantLease, ours), dhcpv4.MessageTypeNone, netip.Addr{}, declines},
		{"decline of another address", build(t, dhcpv4.MessageTypeDecline, wantOther, ours), dhcpv4.MessageTypeNone, netip.Addr{}, ignored},
		{"decline to another server", build(t, dhcpv4.MessageTypeDecline, wantLease, theirs), dhcpv4.MessageTypeNone, netip.Addr{}, ignored},
		{"inform", build(t, dhcpv4.MessageTypeInform, fromLease), dhcpv4.MessageTypeAck, leaseAddr, informs},
		{"inform, broadcast flag", build(t, dhcpv4.MessageTypeInform, fromLease, broadcast), dhcpv4.MessageTypeAck, leaseAddr, informs},
		{"inform from a non-Ethernet chaddr", build(t, dhcpv4.MessageTypeInform, fromLease, dhcpv4.WithHWType(iana.HWTypeInfiniband)), dhcpv4.MessageTypeAck, leaseAddr, informs},
		{"inform from another address", build(t, dhcpv4.MessageTypeInform, fromOther), dhcpv4.MessageTypeNone, netip.Addr{}, ignored},

		{"relayed", build(t, dhcpv4.MessageTypeDiscover, dhcpv4.WithGatewayIP(ip(otherAddr))), dhcpv4.MessageTypeNone, netip.Addr{}, ignored},
		{"a server's offer", build(t, dhcpv4.MessageTypeOffer), dhcpv4.MessageTypeNone, netip.Addr{}, ignored},
		{"a BOOTREPLY", build(t, dhcpv4.MessageTypeDiscover, func(d *dhcpv4.DHCPv4) { d.OpCode = dhcpv4.OpcodeBootReply }), dhcpv4.MessageTypeNone, netip.Addr{}, ignored},
		{"BOOTP", build(t, dhcpv4.MessageTypeNone), dhcpv4.MessageTypeNone, netip.Addr{}, ignored},
		{"an unknown type", build(t, dhcpv4.MessageType(200)), dhcpv4.MessageTypeNone, netip.Addr{}, ignored},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t, testConfig())
			r, ok, err := s.Handle(tt.msg, clock)
			if err != nil {
				t.Fatalf("Handle: %v", err)
			}
			checkCounters(t, s, tt.counted)
			if tt.want == dhcpv4.MessageTypeNone {
				if ok {
					t.Fatalf("replied %+v, want no reply", r)
				}
				return
			}
			if !ok {
				t.Fatalf("no reply, want %v", tt.want)
			}
			if r.Dst != tt.dst {
				t.Errorf("sent to %v, want %v", r.Dst, tt.dst)
			}
			d := parseReply(t, r, tt.msg)
			if got := d.MessageType(); got != tt.want {
				t.Errorf("reply is %v, want %v", got, tt.want)
			}
		})
	}
}

// checkCounters fails unless want is 1 and every other counter 0.
func checkCounters(t *testing.T, s *Server, want counter) {
	t.Helper()
	for name, c := range counters {
		n := c(s.Stats()).Load()
		if wanted := c(s.Stats()) == want(s.Stats()); (wanted && n != 1) || (!wanted && n != 0) {
			t.Errorf("Stats.%s = %d", name, n)
		}
	}
}

// parseReply parses a reply and checks the header fields every reply to req
// shares (RFC 2131 table 3).
func parseReply(t *testing.T, r Reply, req []byte) *dhcpv4.DHCPv4 {
	t.Helper()
	q, err := dhcpv4.FromBytes(req)
	if err != nil {
		t.Fatal(err)
	}
	d, err := dhcpv4.FromBytes(r.Payload)
	if err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	if len(r.Payload) > maxPayload {
		t.Errorf("reply is %d bytes, over %d", len(r.Payload), maxPayload)
	}
	if d.OpCode != dhcpv4.OpcodeBootReply || d.TransactionID != q.TransactionID || d.Flags != q.Flags ||
		!bytes.Equal(d.ClientHWAddr, q.ClientHWAddr) || d.HWType != q.HWType || d.HopCount != 0 {
		t.Errorf("reply header %s does not answer %s", d.Summary(), q.Summary())
	}
	for name, a := range map[string]net.IP{"ciaddr": d.ClientIPAddr, "siaddr": d.ServerIPAddr, "giaddr": d.GatewayIPAddr} {
		if !a.IsUnspecified() {
			t.Errorf("%s = %v, want 0.0.0.0", name, a)
		}
	}
	if got := d.ServerIdentifier(); !got.Equal(ip(serverAddr)) {
		t.Errorf("server id %v, want %v", got, serverAddr)
	}
	return d
}

// TestOptions checks every option an OFFER, an ACK, an INFORM's ACK and a
// NAK carry, byte for byte where the client reads bytes.
func TestOptions(t *testing.T) {
	grant := []uint8{1, 3, 6, 15, 26, 51, 53, 54, 58, 59, 119}
	tests := []struct {
		name   string
		msg    []byte
		codes  []uint8
		yiaddr netip.Addr
	}{
		{"offer", build(t, dhcpv4.MessageTypeDiscover), grant, leaseAddr},
		{"ack", build(t, dhcpv4.MessageTypeRequest, ours, wantLease), grant, leaseAddr},
		{"ack to inform", build(t, dhcpv4.MessageTypeInform, fromLease), []uint8{1, 3, 6, 15, 26, 53, 54, 119}, netip.IPv4Unspecified()},
		{"nak", build(t, dhcpv4.MessageTypeRequest, wantOther), []uint8{53, 54}, netip.IPv4Unspecified()},
		{"nak with a client id", build(t, dhcpv4.MessageTypeRequest, wantOther, withClientID), []uint8{53, 54, 61}, netip.IPv4Unspecified()},
		{"offer with a client id", build(t, dhcpv4.MessageTypeDiscover, withClientID), append(slices.Clone(grant), 61), leaseAddr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok, err := newServer(t, testConfig()).Handle(tt.msg, clock)
			if err != nil || !ok {
				t.Fatalf("Handle: %v, %v", ok, err)
			}
			d := parseReply(t, r, tt.msg)
			if got := slices.Sorted(mapKeys(d.Options)); !slices.Equal(got, slices.Sorted(slices.Values(tt.codes))) {
				t.Errorf("options %v, want %v", got, tt.codes)
			}
			if !d.YourIPAddr.Equal(ip(tt.yiaddr)) {
				t.Errorf("yiaddr %v, want %v", d.YourIPAddr, tt.yiaddr)
			}
			checkValues(t, d)
		})
	}
}

var withClientID = dhcpv4.WithOption(dhcpv4.OptClientIdentifier(append([]byte{1}, clientMAC...)))

func mapKeys(o dhcpv4.Options) func(func(uint8) bool) {
	return func(yield func(uint8) bool) {
		for k := range o {
			if !yield(k) {
				return
			}
		}
	}
}

// checkValues checks the values of whichever options d holds.
func checkValues(t *testing.T, d *dhcpv4.DHCPv4) {
	t.Helper()
	want := map[dhcpv4.OptionCode][]byte{
		dhcpv4.OptionSubnetMask:          {255, 255, 0, 0},
		dhcpv4.OptionRouter:              ip(serverAddr),
		dhcpv4.OptionDomainNameServer:    {198, 18, 0, 1, 198, 18, 0, 2},
		dhcpv4.OptionDomainName:          []byte("tunnel.test"),
		dhcpv4.OptionDNSDomainSearchList: []byte("\x06tunnel\x04test\x00\x04corp\x04test\x00"),
		dhcpv4.OptionInterfaceMTU:        {0x05, 0x78},
		dhcpv4.OptionIPAddressLeaseTime:  {0, 0, 0x0e, 0x10}, // 3600
		dhcpv4.OptionRenewTimeValue:      {0, 0, 0x07, 0x08}, // 1800
		dhcpv4.OptionRebindingTimeValue:  {0, 0, 0x0c, 0x4e}, // 3150
		dhcpv4.OptionServerIdentifier:    ip(serverAddr),
		dhcpv4.OptionClientIdentifier:    append([]byte{1}, clientMAC...),
	}
	for code, v := range want {
		if got, ok := d.Options[code.Code()]; ok && !bytes.Equal(got, v) {
			t.Errorf("option %d (%v) = %x, want %x", code.Code(), code, got, v)
		}
	}
	if got := d.DomainSearch(); got == nil || !slices.Equal(got.Labels, []string{"tunnel.test", "corp.test"}) {
		if d.Options.Has(dhcpv4.OptionDNSDomainSearchList) {
			t.Errorf("domain search %v", got)
		}
	}
}

// TestClasslessRoutes checks option 121 (RFC 3442) as a client decodes
// it: each IPv4 route via the router, the IPv6 ones left out, and option
// 3 still there for clients that know no option 121.
func TestClasslessRoutes(t *testing.T) {
	cfg := testConfig()
	cfg.Routes = []netip.Prefix{
		netip.MustParsePrefix("198.19.0.0/16"),
		netip.MustParsePrefix("198.19.128.9/17"), // masked on the wire
		netip.MustParsePrefix("2001:2:1::/48"),
		netip.MustParsePrefix("198.19.7.7/32"),
		netip.MustParsePrefix("0.0.0.0/0"),
	}
	msg := build(t, dhcpv4.MessageTypeDiscover)
	r, ok, err := newServer(t, cfg).Handle(msg, clock)
	if err != nil || !ok {
		t.Fatalf("Handle: %v, %v", ok, err)
	}
	d := parseReply(t, r, msg)
	want := []byte{16, 198, 19, 198, 18, 0, 1, 17, 198, 19, 128, 198, 18, 0, 1, 32, 198, 19, 7, 7, 198, 18, 0, 1, 0, 198, 18, 0, 1}
	if got := d.Options.Get(dhcpv4.OptionClasslessStaticRoute); !bytes.Equal(got, want) {
		t.Errorf("option 121 = %v, want %v", got, want)
	}
	var got []string
	for _, rt := range d.ClasslessStaticRoute() {
		got = append(got, rt.String())
	}
	if w := []string{"route to 198.19.0.0/16 via 198.18.0.1", "route to 198.19.128.0/17 via 198.18.0.1",
		"route to 198.19.7.7/32 via 198.18.0.1", "route to 0.0.0.0/0 via 198.18.0.1"}; !slices.Equal(got, w) {
		t.Errorf("routes %q, want %q", got, w)
	}
	if !d.Options.Has(dhcpv4.OptionRouter) {
		t.Error("option 3 left out")
	}
}

// TestMalformed feeds Handle what is not a DHCPv4 request: an error that
// wraps ErrMalformed, no reply, and the Malformed counter.
func TestMalformed(t *testing.T) {
	good := build(t, dhcpv4.MessageTypeDiscover)
	optionsAt := 240 // after the fixed header and the magic cookie
	withOpts := func(opts ...byte) []byte { return append(slices.Clone(good[:optionsAt]), opts...) }
	tests := map[string][]byte{
		"empty":                    nil,
		"short header":             good[:100],
		"no magic cookie":          good[:236],
		"wrong magic cookie":       append(slices.Clone(good[:236]), 1, 2, 3, 4, 255),
		"no end option":            withOpts(53, 1, 1),
		"option past the end":      withOpts(53, 1, 1, 50, 4, 198, 18),
		"message type of 2 bytes":  withOpts(53, 2, 1, 1, 255),
		"message type of 0 bytes":  withOpts(53, 0, 255),
		"message type 0":           withOpts(53, 1, 0, 255),
		"requested address 3 long": withOpts(53, 1, 3, 50, 3, 198, 18, 3, 255),
		"server id 5 long":         withOpts(53, 1, 3, 54, 5, 198, 18, 0, 1, 0, 255),
	}
	for name, msg := range tests {
		t.Run(name, func(t *testing.T) {
			s := newServer(t, testConfig())
			r, ok, err := s.Handle(msg, clock)
			if !errors.Is(err, ErrMalformed) || ok {
				t.Fatalf("Handle = %+v, %v, %v; want an ErrMalformed", r, ok, err)
			}
			checkCounters(t, s, malformed)
		})
	}
}

// logRecords is a slog.Handler that keeps what it is given.
type logRecords struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r)
	return nil
}
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecords) WithGroup(string) slog.Handler      { return l }

// take returns the records at level Info and above since the last take, as
// "message attr=value ...".
func (l *logRecords) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.recs {
		if r.Level < slog.LevelInfo {
			continue
		}
		s := r.Message
		r.Attrs(func(a slog.Attr) bool {
			s += " " + a.String()
			return true
		})
		out = append(out, s)
	}
	l.recs = nil
	return out
}

// TestLeaseLog follows one lease through its life: logged when given, not
// when renewed, logged again after a release, a decline, an expiry and a
// new MAC; a release and a decline say so.
func TestLeaseLog(t *testing.T) {
	logs := &logRecords{}
	cfg := testConfig()
	cfg.Log = slog.New(logs)
	s := newServer(t, cfg)
	named := []dhcpv4.Modifier{ours, wantLease, withClientID, dhcpv4.WithOption(dhcpv4.OptHostName("laptop"))}
	const lease = "dhcp lease addr=198.18.3.9 mac=02:00:5e:10:00:09 hostname=laptop client_id=0102005e100009 lease=1h0m0s"
	otherMAC := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x42}
	steps := []struct {
		name string
		msg  []byte
		at   time.Duration
		want []string
	}{
		{"discover", build(t, dhcpv4.MessageTypeDiscover), 0, nil},
		{"first ack", build(t, dhcpv4.MessageTypeRequest, named...), 0, []string{lease}},
		{"renewal", build(t, dhcpv4.MessageTypeRequest, fromLease), 30 * time.Minute, nil},
		{"release", build(t, dhcpv4.MessageTypeRelease, fromLease, ours), 40 * time.Minute, []string{"dhcp release addr=198.18.3.9 mac=02:00:5e:10:00:09"}},
		{"ack after release", build(t, dhcpv4.MessageTypeRequest, named...), 41 * time.Minute, []string{lease}},
		{"decline", build(t, dhcpv4.MessageTypeDecline, wantLease, ours), 42 * time.Minute,
			[]string{"dhcp decline: the client finds its address in use on its side of the tunnel addr=198.18.3.9 mac=02:00:5e:10:00:09"}},
		{"ack after decline", build(t, dhcpv4.MessageTypeRequest, wantLease), 43 * time.Minute,
			[]string{"dhcp lease addr=198.18.3.9 mac=02:00:5e:10:00:09 lease=1h0m0s"}},
		{"ack after expiry", build(t, dhcpv4.MessageTypeRequest, wantLease), 43*time.Minute + time.Hour,
			[]string{"dhcp lease addr=198.18.3.9 mac=02:00:5e:10:00:09 lease=1h0m0s"}},
		{"renewal just before expiry", build(t, dhcpv4.MessageTypeRequest, fromLease), 43*time.Minute + 2*time.Hour - time.Second, nil},
		{"another MAC", build(t, dhcpv4.MessageTypeRequest, wantLease, dhcpv4.WithHwAddr(otherMAC)), 3 * time.Hour,
			[]string{"dhcp lease addr=198.18.3.9 mac=02:00:00:00:00:42 lease=1h0m0s"}},
		{"nak", build(t, dhcpv4.MessageTypeRequest, wantOther), 3 * time.Hour,
			[]string{"dhcp nak requested=198.18.7.7 addr=198.18.3.9 mac=02:00:5e:10:00:09"}},
		{"inform", build(t, dhcpv4.MessageTypeInform, fromLease), 3 * time.Hour, nil},
	}
	for _, st := range steps {
		if _, _, err := s.Handle(st.msg, clock.Add(st.at)); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := logs.take(); !slices.Equal(got, st.want) {
			t.Errorf("%s: logged %q, want %q", st.name, got, st.want)
		}
	}
}

// TestClientLogThrottled: a client that changes its chaddr in every
// REQUEST, or asks for other addresses, gets one Info line of each kind
// per clientLogEvery; the rest go to Debug and the next Info line counts
// them.
func TestClientLogThrottled(t *testing.T) {
	logs := &logRecords{}
	cfg := testConfig()
	cfg.Log = slog.New(logs)
	s := newServer(t, cfg)
	flood := func(at time.Duration) {
		for i := range 50 {
			chaddr := dhcpv4.WithHwAddr(net.HardwareAddr{0x02, 0, 0, 0, 1, byte(i)})
			for _, m := range [][]byte{build(t, dhcpv4.MessageTypeRequest, wantLease, chaddr), build(t, dhcpv4.MessageTypeRequest, wantOther, chaddr)} {
				if _, _, err := s.Handle(m, clock.Add(at+time.Duration(i)*time.Millisecond)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	flood(0)
	if got := logs.take(); len(got) != 2 || !strings.HasPrefix(got[0], "dhcp lease ") || !strings.HasPrefix(got[1], "dhcp nak ") {
		t.Errorf("a flood logged %q, want one lease and one nak line", got)
	}
	flood(clientLogEvery)
	got := logs.take()
	if len(got) != 2 || !strings.HasSuffix(got[0], " held_back=49") || !strings.HasSuffix(got[1], " held_back=49") {
		t.Errorf("the next flood logged %q, want one lease and one nak line, each with held_back=49", got)
	}
}

// TestConcurrent runs Handle from several goroutines, for the race detector.
func TestConcurrent(t *testing.T) {
	s := newServer(t, testConfig())
	msgs := [][]byte{
		build(t, dhcpv4.MessageTypeDiscover),
		build(t, dhcpv4.MessageTypeRequest, ours, wantLease),
		build(t, dhcpv4.MessageTypeRelease, fromLease),
		build(t, dhcpv4.MessageTypeDecline, wantLease),
	}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 200 {
				if _, _, err := s.Handle(msgs[(i+j)%len(msgs)], clock.Add(time.Duration(j)*time.Second)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	st := s.Stats()
	if n := st.Offers.Load() + st.Acks.Load() + st.Releases.Load() + st.Declines.Load(); n != 800 {
		t.Errorf("counted %d messages, want 800", n)
	}
}

// BenchmarkHandleDiscover measures a DISCOVER in and its OFFER out.
func BenchmarkHandleDiscover(b *testing.B) {
	s := newServer(b, testConfig())
	msg := build(b, dhcpv4.MessageTypeDiscover, withClientID, dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer, dhcpv4.OptionDomainName, dhcpv4.OptionInterfaceMTU, dhcpv4.OptionDNSDomainSearchList))
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, err := s.Handle(msg, clock); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

// TestLeased: sshvpn status shows the lease while a client holds it: from
// its ACK until it expires or is released.
func TestLeased(t *testing.T) {
	s := newServer(t, testConfig())
	if _, ok := s.Leased(clock); ok {
		t.Fatal("leased before any REQUEST")
	}
	if _, _, err := s.Handle(build(t, dhcpv4.MessageTypeRequest, fromLease), clock); err != nil {
		t.Fatal(err)
	}
	if a, ok := s.Leased(clock); !ok || a != leaseAddr {
		t.Errorf("after the ACK: %v %v, want %v", a, ok, leaseAddr)
	}
	if _, ok := s.Leased(clock.Add(s.cfg.LeaseTime + time.Second)); ok {
		t.Error("leased after the lease expired")
	}
	if _, _, err := s.Handle(build(t, dhcpv4.MessageTypeRelease, fromLease), clock); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Leased(clock); ok {
		t.Error("leased after the RELEASE")
	}
}
