package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// The harness's results and their three renderings: markdown tables, the
// JSON of every sample, and an SVG bar chart. Everything here is a pure
// function of a Run, so report_test.go checks it without root or network.

// Run is one whole harness run.
type Run struct {
	Started  time.Time `json:"started"`
	WallSecs float64   `json:"wall_seconds"` // the harness alone, build and micro-benchmarks excluded
	Mode     string    `json:"mode"`         // BENCH: default, quick or full
	Host     Host      `json:"host"`
	Profiles []Profile `json:"profiles"`
	Notes    []string  `json:"notes,omitempty"` // what could not be measured, and why
}

// Host describes the machine and the code measured.
type Host struct {
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpu_model"`
	Kernel   string `json:"kernel"`
	Go       string `json:"go"`
	Revision string `json:"revision"` // git describe of the tree measured
}

// Profile is one network path (plain veth, or delaylink with delay and
// loss) under one OpenSSH generation, measured through every configuration.
type Profile struct {
	Name    string   `json:"name"`    // e.g. "lan", "wan40", "wan40-loss1"
	Desc    string   `json:"desc"`    // the path, in words
	OpenSSH string   `json:"openssh"` // major.minor of the ssh/sshd used
	Rounds  int      `json:"rounds"`
	Secs    int      `json:"iperf_seconds"` // iperf3 -t
	Omit    int      `json:"iperf_omit"`    // iperf3 -O
	Tests   []string `json:"tests"`         // test IDs, in column order (see TestLabel)
	// Configs are in table order; "openssh" is the reference for ratios.
	Configs []Config `json:"configs"`
}

// Config is every sample of one configuration in one profile.
type Config struct {
	Name   string `json:"name"`
	Cipher string `json:"cipher,omitempty"`
	// Error says why this configuration produced nothing (or stopped
	// producing); its samples so far are kept.
	Error string `json:"error,omitempty"`
	// NoPing says why there are no RTT figures (a path that carries no ICMP).
	NoPing string `json:"no_ping,omitempty"`
	// NoCPU says why there are no CPU figures (no tunnel processes).
	NoCPU      string       `json:"no_cpu,omitempty"`
	Throughput []TputSample `json:"throughput"`
	PingIdle   []PingSample `json:"ping_idle,omitempty"`
	PingLoaded []PingSample `json:"ping_loaded,omitempty"` // during the download ×1 test
	// ConnectMS is, per round, the time from starting the client to the
	// first echo reply from the LAN host through the new tunnel.
	ConnectMS []float64 `json:"connect_ms,omitempty"`
	// GatewayRSS is, per round, the sum of VmHWM over the gateway side's
	// tunnel processes, in bytes.
	GatewayRSS []int64 `json:"gateway_rss,omitempty"`
}

// TputSample is one iperf3 run.
type TputSample struct {
	Test    string  `json:"test"`
	Round   int     `json:"round"`
	Mbps    float64 `json:"mbps"`  // iperf3's end.sum_received.bits_per_second / 1e6
	Bytes   int64   `json:"bytes"` // end.sum_received.bytes
	Retrans int64   `json:"retransmits"`
	// ClientCPU and GatewayCPU are the CPU seconds the tunnel's processes
	// on each side used while Bytes moved (iperf3 and ping excluded).
	ClientCPU  float64 `json:"client_cpu_seconds"`
	GatewayCPU float64 `json:"gateway_cpu_seconds"`
	Error      string  `json:"error,omitempty"`
}

// PingSample is one ping run: the RTT of every reply, and how many echo
// requests went out.
type PingSample struct {
	Round int       `json:"round"`
	Sent  int       `json:"sent"`
	RTTms []float64 `json:"rtt_ms"`
}

// The test IDs: direction and parallel streams.
const (
	Up1   = "up-1"
	Up4   = "up-4"
	Down1 = "down-1"
	Down4 = "down-4"
)

// TestLabel is a test's column heading.
func TestLabel(id string) string {
	switch id {
	case Up1:
		return "upload ×1"
	case Up4:
		return "upload ×4"
	case Down1:
		return "download ×1"
	case Down4:
		return "download ×4"
	}
	return id
}

// inferred marks a cipher that no log names (sshvpn ⇄ sshvpn) but that the
// harness worked out from both ends' preferences.
const inferred = "†"

// Reference is the configuration every point-to-point row's ratio is
// taken against; an ethernet row's is ReferenceL2, a SOCKS row's
// ReferenceSOCKS (ReferenceOf).
const (
	Reference      = "openssh"
	ReferenceL2    = "openssh-ethernet"
	ReferenceSOCKS = "ssh-D"
)

// ethernetSuffix ends the name of each layer-2 row: the same pairing as
// the row without it, with Tunnel=ethernet.
const ethernetSuffix = "-ethernet"

// ReferenceOf is the row name's ratio reference: stock ssh -w in the same
// tunnel mode, or stock ssh -D for a SOCKS row.
func ReferenceOf(name string) string {
	switch {
	case strings.HasSuffix(name, ethernetSuffix):
		return ReferenceL2
	case SOCKSRow(name):
		return ReferenceSOCKS
	}
	return Reference
}

// socksClientSuffix ends the client's part of a SOCKS row's name (the
// part before "→", or all of it): the -D that ssh and sshvpn connect both
// take for a SOCKS proxy.
const socksClientSuffix = "-D"

// SOCKSRow reports whether the row named name is the rootless client's
// kind: TCP through a SOCKS proxy on the client host, one SSH channel per
// connection, no tunnel.
func SOCKSRow(name string) bool {
	client, _, _ := strings.Cut(name, "→")
	return strings.HasSuffix(client, socksClientSuffix)
}

// intoSSHVPN reports whether a row's server (after "→") is an sshvpn
// gateway.
func intoSSHVPN(name string) bool {
	_, server, ok := strings.Cut(name, "→")
	return ok && strings.HasPrefix(server, "sshvpn")
}

// L3Of is the point-to-point row of an ethernet row's pairing, or "" for
// a point-to-point row.
func L3Of(name string) string {
	if l3, ok := strings.CutSuffix(name, ethernetSuffix); ok {
		return l3
	}
	return ""
}

// L2Floor is the least an ethernet row may carry against the
// point-to-point row of its pairing: framing adds 14 bytes a packet and
// the gateway's segment some work, not a fifth.
const L2Floor = 0.8

// SOCKSFloor is the least a SOCKS row of sshvpn's may carry against
// ssh -D: the same channel per connection, with a faster SSH underneath.
const SOCKSFloor = 1.0

// Ceiling is the row of bare x/crypto/ssh channels, one per connection:
// what a SOCKS row into sshvpn's gateway is, minus the proxy and the
// gateway's dialling.
const Ceiling = "ssh-channel"

// CeilingFloor is the least a SOCKS row into sshvpn's gateway may carry
// against Ceiling in CeilingProfile, where CPU, not the path, decides
// both: the proxy and the gateway may cost a fifth, no more.
const (
	CeilingFloor   = 0.8
	CeilingProfile = "lan"
)

// Stat is a median with its range.
type Stat struct {
	Med, Min, Max float64
	N             int
}

// Valid reports whether the stat has any sample.
func (s Stat) Valid() bool { return s.N > 0 }

// statOf summarizes xs (which it sorts).
func statOf(xs []float64) Stat {
	if len(xs) == 0 {
		return Stat{}
	}
	sort.Float64s(xs)
	return Stat{Med: median(xs), Min: xs[0], Max: xs[len(xs)-1], N: len(xs)}
}

// median of sorted xs.
func median(xs []float64) float64 {
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// percentile is the nearest-rank percentile p (0–100] of sorted xs.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(p/100*float64(len(xs)))) - 1
	return xs[max(0, min(i, len(xs)-1))]
}

// Summary is one configuration's figures in one profile.
type Summary struct {
	Tput map[string]Stat // by test ID, Mbit/s
	// RTT percentiles over every reply of every round, ms; NaN when none.
	IdleP50, IdleP99, LoadP50, LoadP99 float64
	IdleLoss, LoadLoss                 float64 // fraction of echo requests unanswered
	// CPU seconds per GiB moved, per round (the round's CPU over its bytes).
	ClientCPU, GatewayCPU Stat
	RSSMiB                float64 // largest per-round gateway RSS; NaN when none
	Connect               Stat    // ms
}

// Summarize computes c's figures.
func Summarize(c Config) Summary {
	s := Summary{Tput: map[string]Stat{}, RSSMiB: math.NaN()}
	byTest := map[string][]float64{}
	type round struct{ bytes, cli, gw float64 }
	rounds := map[int]*round{}
	for _, x := range c.Throughput {
		if x.Error != "" || x.Bytes <= 0 {
			continue
		}
		byTest[x.Test] = append(byTest[x.Test], x.Mbps)
		r := rounds[x.Round]
		if r == nil {
			r = &round{}
			rounds[x.Round] = r
		}
		r.bytes += float64(x.Bytes)
		r.cli += x.ClientCPU
		r.gw += x.GatewayCPU
	}
	for t, xs := range byTest {
		s.Tput[t] = statOf(xs)
	}
	var cli, gw []float64
	for _, r := range rounds {
		gib := r.bytes / (1 << 30)
		cli = append(cli, r.cli/gib)
		gw = append(gw, r.gw/gib)
	}
	if c.NoCPU == "" {
		s.ClientCPU, s.GatewayCPU = statOf(cli), statOf(gw)
	}
	s.IdleP50, s.IdleP99, s.IdleLoss = pingStats(c.PingIdle)
	s.LoadP50, s.LoadP99, s.LoadLoss = pingStats(c.PingLoaded)
	for _, b := range c.GatewayRSS {
		if v := float64(b) / (1 << 20); math.IsNaN(s.RSSMiB) || v > s.RSSMiB {
			s.RSSMiB = v
		}
	}
	s.Connect = statOf(append([]float64(nil), c.ConnectMS...))
	return s
}

// pingStats pools the replies of every round.
func pingStats(ps []PingSample) (p50, p99, loss float64) {
	var all []float64
	sent := 0
	for _, p := range ps {
		all = append(all, p.RTTms...)
		sent += p.Sent
	}
	if len(all) == 0 {
		return math.NaN(), math.NaN(), math.NaN()
	}
	sort.Float64s(all)
	loss = 0
	if sent > 0 {
		loss = math.Max(0, 1-float64(len(all))/float64(sent))
	}
	return percentile(all, 50), percentile(all, 99), loss
}

// ratio is a/b as "1.23×", or "" when either is missing.
func ratio(a, b float64) string {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return ""
	}
	if r := a / b; r >= 1 && r < 10 {
		return fmt.Sprintf("%.2f×", r) // 1.00×, not 1×
	}
	return num(a/b) + "×"
}

// num formats a figure with about three significant digits.
func num(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v):
		return "–"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

// statCell is "median (min–max) ratio×".
func statCell(s, ref Stat) string {
	if !s.Valid() {
		return "–"
	}
	cell := num(s.Med)
	if s.N > 1 && num(s.Min) != num(s.Max) {
		cell += fmt.Sprintf(" (%s–%s)", num(s.Min), num(s.Max))
	}
	if ref.Valid() {
		if r := ratio(s.Med, ref.Med); r != "" {
			cell += " " + r
		}
	}
	return cell
}

// figCell is "value ratio×" for a single figure.
func figCell(v, ref float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	if r := ratio(v, ref); r != "" {
		return num(v) + " " + r
	}
	return num(v)
}

// Markdown renders the whole run: a header, then per profile a throughput
// table and a table of the other figures, every figure with its ratio to
// the same profile's openssh row.
func Markdown(r Run) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Run of %s (BENCH=%s), %s, %d CPUs (%s), Linux %s, %s; harness wall time %s.\n",
		r.Started.UTC().Format("2006-01-02 15:04 UTC"), r.Mode, r.Host.Revision, r.Host.CPUs, r.Host.CPUModel,
		r.Host.Kernel, r.Host.Go, (time.Duration(r.WallSecs) * time.Second).String())
	b.WriteString("\nEvery cell: median over the rounds (min–max), then the ratio to `openssh` (an ethernet row's: to `openssh-ethernet`; a SOCKS row's: to `ssh-D`) in the same profile. " +
		"Throughput in Mbit/s (higher is better); RTT in ms, CPU in seconds per GiB moved, RSS in MiB and connect in ms (lower is better).\n")
	for _, p := range r.Profiles {
		writeProfile(&b, p)
	}
	if len(r.Notes) > 0 {
		b.WriteString("\n**Not measured:**\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}

// writeProfile writes one profile's two tables and its footnotes.
func writeProfile(b *strings.Builder, p Profile) {
	omit := ""
	if p.Omit > 0 {
		omit = fmt.Sprintf(" -O %d", p.Omit)
	}
	fmt.Fprintf(b, "\n### %s — %s (OpenSSH %s; %d rounds; iperf3 -t %d%s)\n\n", p.Name, p.Desc, p.OpenSSH, p.Rounds, p.Secs, omit)
	sums := make([]Summary, len(p.Configs))
	byName := map[string]Summary{}
	for i, c := range p.Configs {
		sums[i] = Summarize(c)
		byName[c.Name] = sums[i]
	}
	none := Summarize(Config{})
	refOf := func(name string) Summary {
		if s, ok := byName[ReferenceOf(name)]; ok {
			return s
		}
		return none
	}
	b.WriteString("| configuration | cipher |")
	for _, t := range p.Tests {
		fmt.Fprintf(b, " %s |", TestLabel(t))
	}
	b.WriteString("\n|---|---|" + strings.Repeat("--:|", len(p.Tests)) + "\n")
	for i, c := range p.Configs {
		ref := refOf(c.Name)
		fmt.Fprintf(b, "| %s | %s |", c.Name, orDash(c.Cipher))
		for _, t := range p.Tests {
			fmt.Fprintf(b, " %s |", statCell(sums[i].Tput[t], ref.Tput[t]))
		}
		b.WriteString("\n")
	}
	b.WriteString("\n| configuration | RTT idle p50 | p99 | RTT loaded p50 | p99 | client CPU s/GiB | gateway CPU s/GiB | gateway RSS MiB | connect ms |\n")
	b.WriteString("|---|" + strings.Repeat("--:|", 8) + "\n")
	for i, c := range p.Configs {
		s, ref := sums[i], refOf(c.Name)
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", c.Name,
			figCell(s.IdleP50, ref.IdleP50), figCell(s.IdleP99, ref.IdleP99),
			figCell(s.LoadP50, ref.LoadP50), figCell(s.LoadP99, ref.LoadP99),
			statCell(s.ClientCPU, ref.ClientCPU), statCell(s.GatewayCPU, ref.GatewayCPU),
			figCell(s.RSSMiB, ref.RSSMiB), statCell(s.Connect, ref.Connect))
	}
	writeL2(b, p, byName)
	writeSOCKS(b, p, byName)
	var notes []string
	if slices.ContainsFunc(p.Configs, func(c Config) bool { return strings.HasSuffix(c.Cipher, inferred) }) {
		notes = append(notes, inferred+" sshvpn logs no cipher: this is x/crypto/ssh's first preference that sshvpn serve offers (its --ciphers default)")
	}
	for i, c := range p.Configs {
		if c.Error != "" {
			notes = append(notes, fmt.Sprintf("%s: %s", c.Name, c.Error))
		}
		var bad []string
		for _, x := range c.Throughput {
			if x.Error != "" {
				bad = append(bad, fmt.Sprintf("round %d %s: %s", x.Round+1, TestLabel(x.Test), x.Error))
			}
		}
		if len(bad) > 0 {
			notes = append(notes, fmt.Sprintf("%s: %d failed test(s), left out of the figures; first: %s", c.Name, len(bad), bad[0]))
		}
		if c.NoPing != "" {
			notes = append(notes, fmt.Sprintf("%s: no RTT: %s", c.Name, c.NoPing))
		}
		if l := sums[i].LoadLoss; l > 0.05 {
			notes = append(notes, fmt.Sprintf("%s: %.0f%% of the pings under load went unanswered", c.Name, 100*l))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\n")
		for _, n := range notes {
			fmt.Fprintf(b, "- %s\n", n)
		}
	}
}

// writeL2 writes, when the profile has ethernet rows, each one's
// throughput against the point-to-point row of the same pairing, marking
// those under L2Floor.
func writeL2(b *strings.Builder, p Profile, byName map[string]Summary) {
	var rows []string
	for _, c := range p.Configs {
		l3, ok := byName[L3Of(c.Name)]
		if !ok {
			continue
		}
		rows = append(rows, fmt.Sprintf("| %s | %s |", c.Name, L3Of(c.Name))+floorCells(p, byName[c.Name], l3, L2Floor))
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(b, "\nLayer 2 against layer 3: each ethernet row's median throughput over its point-to-point row's (floor %v).\n\n| ethernet row | point-to-point row |", L2Floor)
	for _, t := range p.Tests {
		fmt.Fprintf(b, " %s |", TestLabel(t))
	}
	b.WriteString("\n|---|---|" + strings.Repeat("--:|", len(p.Tests)) + "\n")
	b.WriteString(strings.Join(rows, "\n") + "\n")
}

// writeSOCKS writes, when the profile has SOCKS rows, each one's
// throughput against ssh-D's (SOCKSFloor), the ones into sshvpn's gateway
// also against Ceiling's (CeilingFloor in CeilingProfile, no floor
// elsewhere), and ssh-D's own against openssh's for scale.
func writeSOCKS(b *strings.Builder, p Profile, byName map[string]Summary) {
	type against struct {
		of    string
		floor float64 // 0: none
	}
	var rows []string
	for _, c := range p.Configs {
		if !SOCKSRow(c.Name) {
			continue
		}
		var as []against
		switch {
		case c.Name == ReferenceSOCKS:
			as = []against{{of: Reference}}
		case intoSSHVPN(c.Name) && p.Name == CeilingProfile:
			as = []against{{ReferenceSOCKS, SOCKSFloor}, {Ceiling, CeilingFloor}}
		case intoSSHVPN(c.Name):
			as = []against{{ReferenceSOCKS, SOCKSFloor}, {of: Ceiling}}
		default:
			as = []against{{ReferenceSOCKS, SOCKSFloor}}
		}
		for _, a := range as {
			ref, ok := byName[a.of]
			if !ok {
				continue
			}
			floor := "–"
			if a.floor > 0 {
				floor = fmt.Sprint(a.floor)
			}
			rows = append(rows, fmt.Sprintf("| %s | %s | %s |", c.Name, a.of, floor)+floorCells(p, byName[c.Name], ref, a.floor))
		}
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(b, "\nSOCKS rows against their floors: each one's median throughput over `%s`'s, the ones into sshvpn's gateway also over `%s`'s (floor %v in %s), and `%s`'s own over `%s`'s.\n\n| SOCKS row | against | floor |",
		ReferenceSOCKS, Ceiling, CeilingFloor, CeilingProfile, ReferenceSOCKS, Reference)
	for _, t := range p.Tests {
		fmt.Fprintf(b, " %s |", TestLabel(t))
	}
	b.WriteString("\n|---|---|--:|" + strings.Repeat("--:|", len(p.Tests)) + "\n")
	b.WriteString(strings.Join(rows, "\n") + "\n")
}

// floorCells are a row's median throughput over ref's, one cell per test
// of the profile, in bold and marked when under floor (0: none).
func floorCells(p Profile, row, ref Summary, floor float64) string {
	var cells strings.Builder
	for _, t := range p.Tests {
		x, y := row.Tput[t], ref.Tput[t]
		cell := "–"
		if x.Valid() && y.Valid() && y.Med > 0 {
			r := x.Med / y.Med
			cell = fmt.Sprintf("%.2f", r)
			if r < floor {
				if cell == fmt.Sprintf("%.2f", floor) {
					cell = fmt.Sprintf("%.3f", r) // not "1.00 < 1"
				}
				cell = "**" + cell + "** < " + fmt.Sprint(floor)
			}
		}
		cells.WriteString(" " + cell + " |")
	}
	return cells.String()
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

// JSON is the run with every sample, indented. NaN never appears: samples
// hold only measured values.
func JSON(r Run) ([]byte, error) {
	out, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// Splice replaces the text between the begin and end markers in doc with
// body; it fails when the markers are missing, so a README that lost them
// is noticed instead of silently left stale.
func Splice(doc, begin, end, body string) (string, error) {
	i := strings.Index(doc, begin)
	j := strings.Index(doc, end)
	if i < 0 || j < i {
		return "", fmt.Errorf("markers %q … %q not found in order", begin, end)
	}
	return doc[:i+len(begin)] + "\n" + strings.TrimSpace(body) + "\n" + doc[j:], nil
}
