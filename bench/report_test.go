package bench

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sampleRun is a small run: a reference row, a faster row with a spread,
// a row with no ping and no CPU, and one that failed.
func sampleRun() Run {
	tp := func(test string, round int, mbps float64, cli, gw float64) TputSample {
		return TputSample{Test: test, Round: round, Mbps: mbps, Bytes: 1 << 30, ClientCPU: cli, GatewayCPU: gw}
	}
	return Run{
		Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), WallSecs: 600, Mode: "default",
		Host: Host{CPUs: 2, CPUModel: "Test CPU", Kernel: "6.1", Go: "go1.26", Revision: "abc123"},
		Profiles: []Profile{{
			Name: "lan", Desc: "veth", OpenSSH: "9.2", Rounds: 3, Secs: 2, Tests: []string{Up1, Down1},
			Configs: []Config{
				{Name: "raw", NoCPU: "no tunnel processes", Throughput: []TputSample{
					tp(Up1, 0, 9000, 0, 0), tp(Down1, 0, 9500, 0, 0)},
					PingIdle: []PingSample{{Round: 0, Sent: 4, RTTms: []float64{0.1, 0.2, 0.3, 0.4}}}},
				{Name: "openssh", Cipher: "chacha20-poly1305@openssh.com", Throughput: []TputSample{
					tp(Up1, 0, 100, 10, 20), tp(Up1, 1, 200, 10, 20), tp(Up1, 2, 300, 10, 20),
					tp(Down1, 0, 400, 5, 5), tp(Down1, 1, 400, 5, 5), tp(Down1, 2, 400, 5, 5)},
					PingIdle:   []PingSample{{Round: 0, Sent: 2, RTTms: []float64{1, 3}}},
					PingLoaded: []PingSample{{Round: 0, Sent: 4, RTTms: []float64{10, 20}}},
					ConnectMS:  []float64{300, 100, 200}, GatewayRSS: []int64{10 << 20, 20 << 20}},
				{Name: "sshvpn⇄sshvpn-kernel", Cipher: "aes128-gcm@openssh.com†", Throughput: []TputSample{
					tp(Up1, 0, 1000, 1, 1), tp(Up1, 1, 800, 1, 1), tp(Up1, 2, 1200, 1, 1),
					{Test: Down1, Round: 0, Error: "iperf3: boom"}},
					PingIdle:  []PingSample{{Round: 0, Sent: 2, RTTms: []float64{0.5, 0.5}}},
					ConnectMS: []float64{50}, GatewayRSS: []int64{30 << 20}},
				{Name: "sshuttle", NoPing: "carries TCP", Error: "start: it broke"},
			},
		}},
		Notes: []string{"wan40: not measured: no delaylink"},
	}
}

func TestStats(t *testing.T) {
	s := statOf([]float64{3, 1, 2})
	if s != (Stat{Med: 2, Min: 1, Max: 3, N: 3}) {
		t.Errorf("statOf = %+v", s)
	}
	if m := median([]float64{1, 2, 3, 10}); m != 2.5 {
		t.Errorf("median of an even count = %v, want 2.5", m)
	}
	xs := make([]float64, 100)
	for i := range xs {
		xs[i] = float64(i + 1)
	}
	if p := percentile(xs, 99); p != 99 {
		t.Errorf("p99 of 1..100 = %v, want 99 (nearest rank)", p)
	}
	if p := percentile(xs, 50); p != 50 {
		t.Errorf("p50 of 1..100 = %v, want 50", p)
	}
	if !math.IsNaN(percentile(nil, 50)) {
		t.Error("percentile of nothing is not NaN")
	}
}

func TestSummarize(t *testing.T) {
	r := sampleRun()
	ref := Summarize(r.Profiles[0].Configs[1])
	if got := ref.Tput[Up1]; got != (Stat{Med: 200, Min: 100, Max: 300, N: 3}) {
		t.Errorf("openssh upload = %+v", got)
	}
	// Per round: (10+5) CPU seconds over 2 GiB on the client.
	if got := ref.ClientCPU; got.Med != 7.5 || got.N != 3 {
		t.Errorf("client CPU s/GiB = %+v, want 7.5 in each of 3 rounds", got)
	}
	if ref.IdleP50 != 1 || ref.IdleP99 != 3 || ref.LoadLoss != 0.5 {
		t.Errorf("ping: p50 %v p99 %v loaded loss %v", ref.IdleP50, ref.IdleP99, ref.LoadLoss)
	}
	if ref.RSSMiB != 20 || ref.Connect.Med != 200 {
		t.Errorf("RSS %v MiB, connect %+v", ref.RSSMiB, ref.Connect)
	}
	raw := Summarize(r.Profiles[0].Configs[0])
	if raw.ClientCPU.Valid() || !math.IsNaN(raw.RSSMiB) || !math.IsNaN(raw.LoadP50) {
		t.Errorf("raw has CPU %+v, RSS %v or loaded RTT %v; want none", raw.ClientCPU, raw.RSSMiB, raw.LoadP50)
	}
	vpn := Summarize(r.Profiles[0].Configs[2])
	if _, ok := vpn.Tput[Down1]; ok {
		t.Errorf("a failed sample counted: %+v", vpn.Tput[Down1])
	}
}

func TestMarkdown(t *testing.T) {
	md := Markdown(sampleRun())
	for _, want := range []string{
		"### lan — veth (OpenSSH 9.2; 3 rounds; iperf3 -t 2)",
		"| configuration | cipher | upload ×1 | download ×1 |",
		"| openssh | chacha20-poly1305@openssh.com | 200 (100–300) 1.00× | 400 1.00× |",
		"| sshvpn⇄sshvpn-kernel | aes128-gcm@openssh.com† | 1000 (800–1200) 5.00× | – |",
		"- † sshvpn logs no cipher",
		"| raw | – | 9000 45.0× | 9500 23.8× |",
		// RTT, CPU, RSS, connect: each with its ratio to openssh.
		"| sshvpn⇄sshvpn-kernel | 0.500 0.500× | 0.500 0.167× | – | – | 1.00 0.133× | 1.00 0.080× | 30.0 1.50× | 50.0 0.250× |",
		"| raw | 0.200 0.200× | 0.400 0.133× | – | – | – | – | – | – |",
		"- sshuttle: start: it broke",
		"- sshvpn⇄sshvpn-kernel: 1 failed test(s), left out of the figures; first: round 1 download ×1: iperf3: boom",
		"- sshuttle: no RTT: carries TCP",
		"- openssh: 50% of the pings under load went unanswered",
		"- wan40: not measured: no delaylink",
		"harness wall time 10m0s",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

// TestMarkdownL2 checks that an ethernet row's ratio is to
// openssh-ethernet, and that the layer-2 table compares it with its
// point-to-point row and marks a figure under the floor.
func TestMarkdownL2(t *testing.T) {
	tp := func(test string, mbps float64) TputSample {
		return TputSample{Test: test, Mbps: mbps, Bytes: 1 << 30}
	}
	run := sampleRun()
	p := &run.Profiles[0]
	p.Configs = append(p.Configs,
		Config{Name: "openssh-ethernet", Throughput: []TputSample{tp(Up1, 50), tp(Down1, 100)}},
		Config{Name: "sshvpn⇄sshvpn-kernel-ethernet", Throughput: []TputSample{tp(Up1, 900), tp(Down1, 100)}})
	p.Configs[2].Throughput = append(p.Configs[2].Throughput, tp(Down1, 500))
	md := Markdown(run)
	for _, want := range []string{
		"| openssh-ethernet | – | 50.0 1.00× | 100 1.00× |",
		"| sshvpn⇄sshvpn-kernel-ethernet | – | 900 18.0× | 100 1.00× |",
		"| ethernet row | point-to-point row | upload ×1 | download ×1 |",
		"| sshvpn⇄sshvpn-kernel-ethernet | sshvpn⇄sshvpn-kernel | 0.90 | **0.20** < 0.8 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if !strings.Contains(md, "| openssh-ethernet | openssh |") {
		t.Errorf("the L2 table lacks openssh-ethernet against openssh:\n%s", md)
	}
}

// TestMarkdownSOCKS checks that a SOCKS row's ratio is to ssh-D, and that
// the SOCKS table holds each row to ssh-D, the row into sshvpn to
// ssh-channel with a floor on lan only, and shows ssh-D against openssh.
func TestMarkdownSOCKS(t *testing.T) {
	tp := func(test string, mbps float64) TputSample {
		return TputSample{Test: test, Mbps: mbps, Bytes: 1 << 30}
	}
	run := sampleRun()
	lan := &run.Profiles[0]
	lan.Configs = append(lan.Configs,
		Config{Name: "ssh-channel", Throughput: []TputSample{tp(Up1, 1000), tp(Down1, 1000)}},
		Config{Name: "ssh-D", Throughput: []TputSample{tp(Up1, 100), tp(Down1, 200)}},
		Config{Name: "sshvpn-D→sshd", Throughput: []TputSample{tp(Up1, 150), tp(Down1, 199.6)}},
		Config{Name: "sshvpn-D→sshvpn-netstack", Throughput: []TputSample{tp(Up1, 900), tp(Down1, 700)}})
	wan := *lan
	wan.Name = "wan40"
	run.Profiles = append(run.Profiles, wan)
	md := Markdown(run)
	lanMD, wanMD, _ := strings.Cut(md, "### wan40")
	for _, want := range []string{
		"| ssh-D | – | 100 1.00× | 200 1.00× |",
		"| sshvpn-D→sshd | – | 150 1.50× | 200 0.998× |",
		"| sshvpn-D→sshvpn-netstack | – | 900 9.00× | 700 3.50× |",
		"| SOCKS row | against | floor | upload ×1 | download ×1 |",
		"| ssh-D | openssh | – | 0.50 | 0.50 |",
		// Under the floor by less than rounding to two places shows.
		"| sshvpn-D→sshd | ssh-D | 1 | 1.50 | **0.998** < 1 |",
		"| sshvpn-D→sshvpn-netstack | ssh-D | 1 | 9.00 | 3.50 |",
		"| sshvpn-D→sshvpn-netstack | ssh-channel | 0.8 | 0.90 | **0.70** < 0.8 |",
	} {
		if !strings.Contains(lanMD, want) {
			t.Errorf("lan's markdown lacks %q:\n%s", want, lanMD)
		}
	}
	if want := "| sshvpn-D→sshvpn-netstack | ssh-channel | – | 0.90 | 0.70 |"; !strings.Contains(wanMD, want) {
		t.Errorf("wan40's markdown lacks %q (no floor outside lan):\n%s", want, wanMD)
	}
	if strings.Contains(lanMD, "| sshvpn-D→sshd | ssh-channel |") {
		t.Errorf("the row into sshd is held to ssh-channel:\n%s", lanMD)
	}
	// The main table's point-to-point rows keep openssh as their reference.
	if want := "| sshvpn⇄sshvpn-kernel | aes128-gcm@openssh.com† | 1000 (800–1200) 5.00× | – |"; !strings.Contains(lanMD, want) {
		t.Errorf("lan's markdown lacks %q:\n%s", want, lanMD)
	}
}

func TestSOCKSRow(t *testing.T) {
	for name, want := range map[string]bool{
		"ssh-D": true, "sshvpn-D→sshd": true, "sshvpn-D→sshvpn-netstack": true,
		"openssh": false, "ssh-channel": false, "ssh→sshvpn-netstack": false,
		"sshvpn⇄sshvpn-netstack": false, "sshvpn→sshd": false, "openssh-ethernet": false,
	} {
		if got := SOCKSRow(name); got != want {
			t.Errorf("SOCKSRow(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestRatio(t *testing.T) {
	for _, tc := range []struct {
		a, b float64
		want string
	}{{2, 1, "2.00×"}, {1, 1, "1.00×"}, {45, 1, "45.0×"}, {1, 8, "0.125×"}, {1, 0, ""}, {math.NaN(), 1, ""}} {
		if got := ratio(tc.a, tc.b); got != tc.want {
			t.Errorf("ratio(%v, %v) = %q, want %q", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestSVG(t *testing.T) {
	svg := SVG(sampleRun())
	d := xml.NewDecoder(strings.NewReader(svg))
	rects, titles := 0, 0
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, svg)
		}
		if se, ok := tok.(xml.StartElement); ok {
			switch se.Name.Local {
			case "rect":
				rects++
			case "title":
				titles++
			}
		}
	}
	// One bar per valid (configuration, test): raw 2, openssh 2,
	// sshvpn 1, sshuttle none.
	if titles != 5 {
		t.Errorf("%d bars, want 5:\n%s", titles, svg)
	}
	// Plus the background and one legend swatch per configuration.
	if rects != 5+1+4 {
		t.Errorf("%d rects, want 10", rects)
	}
	if !strings.Contains(svg, "sshvpn⇄sshvpn-kernel, upload ×1: 1000 Mbit/s (800–1200)") {
		t.Errorf("no tooltip for the sshvpn bar:\n%s", svg)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	r := sampleRun()
	js, err := JSON(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Run
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, r) {
		t.Errorf("JSON round trip changed the run:\n%s", js)
	}
}

func TestSplice(t *testing.T) {
	doc := "intro\n<!-- b -->\nold\n<!-- e -->\nrest\n"
	got, err := Splice(doc, "<!-- b -->", "<!-- e -->", "\nnew table\n")
	if err != nil || got != "intro\n<!-- b -->\nnew table\n<!-- e -->\nrest\n" {
		t.Errorf("Splice = %q, %v", got, err)
	}
	if _, err := Splice("no markers", "<!-- b -->", "<!-- e -->", "x"); err == nil {
		t.Error("Splice without markers did not fail")
	}
}
