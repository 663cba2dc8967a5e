package status

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	time.Local = time.UTC // the table prints local times; the golden file has UTC
	os.Exit(m.Run())
}

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// now is the moment the renderers count from in these tests.
var now = time.Date(2026, 12, 8, 2, 0, 0, 0, time.UTC)

// populated is a Report of each role with every field set: what the
// golden files pin.
func populated() []Report {
	tun := Tunnel{
		Channel: "tun@openssh.com", Mode: "point-to-point", Backend: "netstack", Device: "netstack/3",
		Addresses:    []netip.Prefix{netip.MustParsePrefix("198.18.0.2/24"), netip.MustParsePrefix("2001:2::2/64")},
		Claimed:      []netip.Addr{netip.MustParseAddr("198.18.0.9")},
		Leased:       []netip.Addr{netip.MustParseAddr("198.18.0.10")},
		Since:        now.Add(-5 * time.Minute),
		LastReceived: now.Add(-3 * time.Second),
		In:           Counters{Packets: 900, Bytes: 1268777, Drops: map[string]uint64{"malformed": 1}},
		Out:          Counters{Packets: 1000, Bytes: 3565158, Drops: map[string]uint64{"write": 2, "spoofed": 3}},
		Flows:        &Usage{Used: 3, Limit: 256, Refused: 1},
		Memory:       &Usage{Used: 12288, Limit: 4 << 20},
	}
	gw := Report{
		Role: "gateway", PID: 4242, Version: "v1.2.3", Started: now.Add(-time.Hour),
		Gateway: &Gateway{
			Listen: "[::]:2222", HostKey: "SHA256:hosthosthost", Backend: "netstack", Handshaking: 1,
			Connections: []Connection{{
				User: "alice", Key: "SHA256:alicealice", KeyComment: "alice@laptop", Remote: "198.18.1.2:40000",
				PeerVersion: "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3", Since: now.Add(-6 * time.Minute),
				RTT: Duration(1234 * time.Microsecond), Forwards: Usage{Used: 2, Limit: 64, Refused: 5},
				Tunnels: []Tunnel{tun},
			}},
			Totals:       Traffic{In: Counters{Packets: 9000, Bytes: 12687770}, Out: Counters{Packets: 10000, Bytes: 35651580}},
			Refused:      map[string]uint64{"connections_per_key": 1, "forwards_per_connection": 5},
			AuthFailures: map[string]uint64{"unknown_key": 2},
			DNS:          &DNS{Queries: 10, CacheHits: 3, CacheEntries: 4, CacheBytes: 2048, Refused: 1, Malformed: 2, Dropped: 3, UpstreamFailures: 4},
		},
	}
	ctun := tun
	ctun.Channel, ctun.Backend, ctun.Device, ctun.Flows, ctun.Memory = "tun-stream@sshvpn", "kernel", "tun0", nil, nil
	cl := Report{
		Role: "client", PID: 4343, Version: "v1.2.3", Started: now.Add(-2 * time.Hour),
		Client: &Client{
			State: "up", Server: "alice@gw.example:2222", LastError: "read: connection reset by peer",
			NextTry: now.Add(4 * time.Second), Since: now.Add(-time.Minute), Reconnects: 2,
			PeerVersion: "SSH-2.0-sshvpn", RTT: Duration(2 * time.Millisecond), Tunnel: &ctun,
			Routes: []netip.Prefix{netip.MustParsePrefix("198.19.0.0/16")},
			DNS:    []netip.Addr{netip.MustParseAddr("198.18.0.1")},
			Totals: Traffic{In: Counters{Packets: 1, Bytes: 2}, Out: Counters{Packets: 3, Bytes: 4}},
			Proxies: []Proxy{
				{Kind: "socks", Listen: "127.0.0.1:1080", Conns: Usage{Used: 1, Limit: 512}},
				{Kind: "forward", Listen: "127.0.0.1:8080", Target: "198.19.0.5:80", Conns: Usage{Used: 0, Limit: 512, Refused: 7}},
			},
		},
	}
	return []Report{gw, cl}
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update once to write it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s changed; if on purpose, run go test -update and mind the contract.\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

// TestSchemaGolden pins Report's JSON form: a renamed or dropped field
// fails here. Adding a field changes the golden file too, which is fine;
// renaming one is not.
func TestSchemaGolden(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, populated()); err != nil {
		t.Fatal(err)
	}
	golden(t, "report.json", b.Bytes())

	// And it reads back into the same Reports.
	var back []Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	WriteJSON(&again, back)
	if !bytes.Equal(again.Bytes(), b.Bytes()) {
		t.Errorf("JSON does not round-trip:\n%s", again.Bytes())
	}
}

func TestTable(t *testing.T) {
	var b bytes.Buffer
	if err := WriteTable(&b, populated(), now); err != nil {
		t.Fatal(err)
	}
	golden(t, "table.txt", b.Bytes())
	for _, want := range []string{
		"gateway: pid 4242", "host key: SHA256:hosthosthost", "connection: alice@198.18.1.2:40000",
		"key: SHA256:alicealice (alice@laptop)", "latest packet: 3s ago", "rtt: 1.2ms", "forwards: 2/64 (5 refused)",
		"1.21 MiB received (900 packets)", "flows: 3/256 (1 refused)", "memory: 12.00 KiB/4.00 MiB",
		"mode: point-to-point (L3)", "drops: received malformed 1; sent spoofed 3, write 2",
		"addresses: 198.18.0.2/24, 2001:2::2/64; claimed 198.18.0.9; leased 198.18.0.10",
		"state: up since", "server: alice@gw.example:2222", "proxy: forward 127.0.0.1:8080 → 198.19.0.5:80, connections 0/512 (7 refused)",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

func TestDump(t *testing.T) {
	rs := populated()
	rs[0].Gateway.Connections[0].KeyComment = "tab\there"
	var b bytes.Buffer
	if err := WriteDump(&b, rs); err != nil {
		t.Fatal(err)
	}
	golden(t, "dump.txt", b.Bytes())
	columns := map[string]int{"gateway": 13, "connection": 11, "tunnel": 22, "client": 16}
	for _, l := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
		f := strings.Split(l, "\t")
		if want, ok := columns[f[0]]; !ok || len(f) != want {
			t.Errorf("%s line has %d columns, want %d: %q", f[0], len(f), want, l)
		}
		for i, v := range f {
			if v == "" {
				t.Errorf("%s line: column %d empty: %q", f[0], i, l)
			}
		}
	}
	for _, want := range []string{
		"connection\t4242\t198.18.1.2:40000\talice\tSHA256:alicealice\ttab here\t",
		"\t198.18.0.2/24,2001:2::2/64\t198.18.0.9\t198.18.0.10\t",
		"\tmalformed=1\tspoofed=3,write=2\t3\t256\t12288\t4194304\n",
		"client\t4343\talice@gw.example:2222\tup\t",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("dump lacks %q:\n%s", want, b.String())
		}
	}
}

func TestUnits(t *testing.T) {
	for _, c := range []struct {
		got, want string
	}{
		{Bytes(0), "0 B"}, {Bytes(1023), "1023 B"}, {Bytes(1024), "1.00 KiB"}, {Bytes(3 << 30), "3.00 GiB"},
		{Ago(time.Time{}, now), "never"}, {Ago(now.Add(-3*time.Second), now), "3s ago"},
		{Ago(now.Add(-125*time.Second), now), "2m5s ago"}, {Ago(now.Add(-26*time.Hour), now), "1d2h ago"},
		{RTT(0), "-"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
