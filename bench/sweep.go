package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The loss sweep: N parallel downloads through each way of carrying a
// client's flows — sshvpn's transports side by side, packet (every flow's
// packets inside one SSH channel, TCP over TCP) and flow (each flow its
// own direct-tcpip channel) — beside raw and sshuttle, on every profile,
// with 1, 32 and 128 flows. It is what sets `sshvpn connect --transport
// auto`'s default. Like report.go, everything here is a pure function of
// a SweepRun.

// SweepRun is one whole sweep.
type SweepRun struct {
	Started  time.Time `json:"started"`
	WallSecs float64   `json:"wall_seconds"`
	Mode     string    `json:"mode"` // BENCH
	Host     Host      `json:"host"`
	// Flows are the parallel flow counts, in column order.
	Flows    []int          `json:"flows"`
	Profiles []SweepProfile `json:"profiles"`
	Floors   []FloorCheck   `json:"floors"`
	Notes    []string       `json:"notes,omitempty"`
}

// SweepProfile is one network path measured through every sweep row.
type SweepProfile struct {
	Name    string `json:"name"`
	Desc    string `json:"desc"`
	OpenSSH string `json:"openssh"`
	Secs    int    `json:"iperf_seconds"` // iperf3 -t
	Omit    int    `json:"iperf_omit"`    // iperf3 -O
	// WallSecs is the profile's whole time: starting every row, the
	// tests, the teardown.
	WallSecs float64       `json:"wall_seconds"`
	Configs  []SweepConfig `json:"configs"`
}

// SweepConfig is every sample of one row in one profile.
type SweepConfig struct {
	Name  string `json:"name"`
	Error string `json:"error,omitempty"`
	// Skipped says why the row did not run (its transport has not
	// landed); it stays in the table, where its figures will go.
	Skipped string       `json:"skipped,omitempty"`
	Samples []FlowSample `json:"samples"`
}

// SweepReference is the row every sweep figure is a ratio to: the path
// with no tunnel.
const SweepReference = "raw"

// The transports of `sshvpn connect --transport`, the part of a sweep
// row's name after transportSep.
const (
	TransportPacket = "packet"
	TransportFlow   = "flow"
	TransportAuto   = "auto"
	transportSep    = "/"
)

// ListsFlag reports whether help, a command's -h output as the flag
// package prints it (sshvpn's commands print theirs that way), lists the
// flag name: "  -name" or "  --name" at the start of a line.
func ListsFlag(help []byte, name string) bool {
	for line := range strings.Lines(string(help)) {
		f, ok := strings.CutPrefix(strings.TrimLeft(line, " \t"), "-")
		if !ok || !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "\t") {
			continue
		}
		f = strings.TrimPrefix(f, "-")
		if rest, ok := strings.CutPrefix(f, name); ok && (rest == "" || strings.ContainsAny(rest[:1], " \t\n=")) {
			return true
		}
	}
	return false
}

// The floors of the sweep, checked on aggregate throughput and stalls.
const (
	// FloorProfile is where the flow transport's floors apply: a long
	// path that loses packets, where carrying TCP inside TCP hurts most.
	FloorProfile = "wan40-loss1"
	// FlowOneFloor is the least one flow may carry over raw's one flow.
	FlowOneFloor = 0.8
	// FlowManyFloor is the least 128 flows may carry over raw's 128, in
	// aggregate.
	FlowManyFloor  = 0.5
	FlowManyFlows  = 128
	FlowStallLimit = 2.0 // seconds no flow may go without a byte
	// AutoFloor is the least auto may carry over packet, in every profile
	// and at every flow count: auto must never be the worse choice.
	AutoFloor = 1.0
)

// FloorCheck is one floor checked against one row.
type FloorCheck struct {
	Floor   string  `json:"floor"` // what is checked, in words
	Profile string  `json:"profile"`
	Row     string  `json:"row"`
	Flows   int     `json:"flows"`
	Value   float64 `json:"value"` // the ratio or the seconds checked; NaN never stored
	Limit   string  `json:"limit"` // "≥ 0.8", "≤ 2 s"
	// Result is "pass", "FAIL", or "not measured" with why.
	Result string `json:"result"`
}

// sample is a row's sample with n flows, if it has one without an error.
func (c SweepConfig) sample(n int) (FlowSample, bool) {
	for _, s := range c.Samples {
		if s.Flows == n && s.Error == "" {
			return s, true
		}
	}
	return FlowSample{}, false
}

func (p SweepProfile) config(name string) (SweepConfig, bool) {
	i := slices.IndexFunc(p.Configs, func(c SweepConfig) bool { return c.Name == name })
	if i < 0 {
		return SweepConfig{}, false
	}
	return p.Configs[i], true
}

// The sweep's sshvpn pairings: sshvpn connect into sshvpn serve (its
// default, rootless backend) and into stock sshd. Each has a row per
// transport.
const (
	PairingServe = "sshvpn⇄sshvpn-netstack"
	PairingSSHD  = "sshvpn→sshd"
)

// sweepPairings are the pairings the floors are checked for, each with
// every transport; a row missing from the run is reported as not measured.
var sweepPairings = []string{PairingServe, PairingSSHD}

// CheckFloors checks every floor of the sweep against r: the flow
// transport's in FloorProfile, and auto against packet in every profile
// and at every flow count.
func CheckFloors(r SweepRun) []FloorCheck {
	var out []FloorCheck
	for _, p := range r.Profiles {
		for _, pair := range sweepPairings {
			flow := pair + transportSep + TransportFlow
			if p.Name == FloorProfile {
				out = append(out,
					ratioFloor(p, "flow aggregate over raw's", flow, SweepReference, 1, FlowOneFloor),
					ratioFloor(p, "flow aggregate over raw's", flow, SweepReference, FlowManyFlows, FlowManyFloor))
				for _, n := range r.Flows {
					out = append(out, stallFloor(p, flow, n))
				}
			}
			for _, n := range r.Flows {
				out = append(out, ratioFloor(p, "auto aggregate over packet's", pair+transportSep+TransportAuto,
					pair+transportSep+TransportPacket, n, AutoFloor))
			}
		}
	}
	return out
}

// ratioFloor checks row's aggregate with n flows over ref's against floor.
func ratioFloor(p SweepProfile, what, row, ref string, n int, floor float64) FloorCheck {
	f := FloorCheck{Floor: what, Profile: p.Name, Row: row, Flows: n, Limit: fmt.Sprintf("≥ %v", floor)}
	x, why := measuredSample(p, row, n)
	if why != "" {
		f.Result = "not measured: " + why
		return f
	}
	y, why := measuredSample(p, ref, n)
	if why != "" || y.AggMbps <= 0 {
		f.Result = "not measured: " + orText(why, ref+" moved nothing")
		return f
	}
	f.Value = x.AggMbps / y.AggMbps
	f.Result = passFail(f.Value >= floor)
	return f
}

// stallFloor checks the longest stall of row's flows with n flows.
func stallFloor(p SweepProfile, row string, n int) FloorCheck {
	f := FloorCheck{Floor: "longest stall of any flow", Profile: p.Name, Row: row, Flows: n,
		Limit: fmt.Sprintf("≤ %v s", FlowStallLimit)}
	x, why := measuredSample(p, row, n)
	if why != "" {
		f.Result = "not measured: " + why
		return f
	}
	f.Value = x.StallSecs
	f.Result = passFail(x.StallSecs <= FlowStallLimit)
	return f
}

// measuredSample is row's sample with n flows, or why there is none.
func measuredSample(p SweepProfile, row string, n int) (FlowSample, string) {
	c, ok := p.config(row)
	if !ok {
		return FlowSample{}, "no " + row + " row in this run"
	}
	if s, ok := c.sample(n); ok {
		return s, ""
	}
	if c.Skipped != "" {
		return FlowSample{}, row + " skipped"
	}
	if c.Error != "" {
		return FlowSample{}, row + ": " + c.Error
	}
	return FlowSample{}, fmt.Sprintf("%s has no sample with %d flows", row, n)
}

func passFail(ok bool) string {
	if ok {
		return "pass"
	}
	return "FAIL"
}

func orText(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

// SweepMarkdown renders the sweep: a header, a table per profile (each
// figure with its ratio to raw's in the same profile and flow count),
// then the floors.
func SweepMarkdown(r SweepRun) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Sweep of %s (BENCH=%s), %s, %d CPUs (%s), Linux %s, %s; wall time %s.\n",
		r.Started.UTC().Format("2006-01-02 15:04 UTC"), r.Mode, r.Host.Revision, r.Host.CPUs, r.Host.CPUModel,
		r.Host.Kernel, r.Host.Go, (time.Duration(r.WallSecs) * time.Second).String())
	fmt.Fprintf(&b, "\nDownloads (the LAN host sends), one round. Per flow count: the aggregate and the slowest flow's throughput in Mbit/s, "+
		"and the longest stall (consecutive %s s intervals in which one flow received nothing) in seconds; each with its ratio to `%s`'s.\n",
		intervalText(r), SweepReference)
	for _, p := range r.Profiles {
		writeSweepProfile(&b, p, r.Flows)
	}
	writeFloors(&b, r.Floors)
	if len(r.Notes) > 0 {
		b.WriteString("\n**Not measured:**\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}

// intervalText is the interval the run's samples were taken at.
func intervalText(r SweepRun) string {
	for _, p := range r.Profiles {
		for _, c := range p.Configs {
			for _, s := range c.Samples {
				if s.IntervalSecs > 0 {
					return fmt.Sprintf("%.1f", s.IntervalSecs)
				}
			}
		}
	}
	return "?"
}

func writeSweepProfile(b *strings.Builder, p SweepProfile, flows []int) {
	omit := ""
	if p.Omit > 0 {
		omit = fmt.Sprintf(" -O %d", p.Omit)
	}
	fmt.Fprintf(b, "\n### %s — %s (OpenSSH %s; iperf3 -R -t %d%s; %s)\n\n| configuration |", p.Name, p.Desc, p.OpenSSH, p.Secs, omit,
		(time.Duration(p.WallSecs) * time.Second).String())
	for _, n := range flows {
		fmt.Fprintf(b, " ×%d aggregate | ×%d slowest | ×%d stall s |", n, n, n)
	}
	b.WriteString("\n|---|" + strings.Repeat("--:|", 3*len(flows)) + "\n")
	ref, _ := p.config(SweepReference)
	var notes []string
	for _, c := range p.Configs {
		fmt.Fprintf(b, "| %s |", c.Name)
		for _, n := range flows {
			s, ok := c.sample(n)
			if !ok {
				b.WriteString(" – | – | – |")
				continue
			}
			r, rok := ref.sample(n)
			if !rok {
				r = FlowSample{AggMbps: math.NaN(), SlowestMbps: math.NaN(), StallSecs: math.NaN()}
			}
			fmt.Fprintf(b, " %s | %s | %s |", figCell(s.AggMbps, r.AggMbps), figCell(s.SlowestMbps, r.SlowestMbps), stallCell(s.StallSecs, r.StallSecs))
		}
		b.WriteString("\n")
		if c.Error != "" {
			notes = append(notes, fmt.Sprintf("%s: %s", c.Name, c.Error))
		}
		for _, s := range c.Samples {
			if s.Error != "" {
				notes = append(notes, fmt.Sprintf("%s ×%d: %s", c.Name, s.Flows, s.Error))
			}
		}
	}
	if len(notes) > 0 {
		b.WriteString("\n")
		for _, n := range notes {
			fmt.Fprintf(b, "- %s\n", n)
		}
	}
}

// stallCell is a stall in seconds, with its ratio to raw's when raw's is
// not zero (a ratio to nothing says nothing).
func stallCell(v, ref float64) string {
	s := fmt.Sprintf("%.1f", v)
	if ref > 0 {
		s += " " + ratio(v, ref)
	}
	return s
}

func writeFloors(b *strings.Builder, fs []FloorCheck) {
	if len(fs) == 0 {
		return
	}
	pass, fail := 0, 0
	for _, f := range fs {
		switch f.Result {
		case "pass":
			pass++
		case "FAIL":
			fail++
		}
	}
	fmt.Fprintf(b, "\nFloors: %d pass, %d fail, %d not measured.\n\n| floor | profile | row | flows | figure | limit | result |\n|---|---|---|--:|--:|---|---|\n",
		pass, fail, len(fs)-pass-fail)
	for _, f := range fs {
		fig, res := "–", f.Result
		if f.Result == "pass" || f.Result == "FAIL" {
			fig = fmt.Sprintf("%.2f", f.Value)
		}
		if f.Result == "FAIL" {
			res = "**FAIL**"
		}
		fmt.Fprintf(b, "| %s | %s | %s | %d | %s | %s | %s |\n", f.Floor, f.Profile, f.Row, f.Flows, fig, f.Limit, res)
	}
}

// WriteSweep writes r's markdown and JSON as results/latest-sweep.{md,json}
// under dir (dev-sweep.* for a partial run) and returns the paths written.
func WriteSweep(dir string, r SweepRun, partial bool) ([]string, error) {
	out, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	out = append(out, '\n')
	base := "latest-sweep"
	if partial {
		base = "dev-sweep"
	}
	res := filepath.Join(dir, "results")
	if err := os.MkdirAll(res, 0o755); err != nil {
		return nil, err
	}
	var written []string
	for name, data := range map[string][]byte{base + ".md": []byte(SweepMarkdown(r)), base + ".json": out} {
		p := filepath.Join(res, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return written, err
		}
		written = append(written, p)
	}
	slices.Sort(written)
	return written, nil
}
