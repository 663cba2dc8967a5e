package bench

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// sampleSweep is a sweep of two profiles: in wan40-loss1 the flow row of
// the pairing into sshvpn meets one floor exactly, misses the 128-flow
// one and stalls too long with 32 flows; in lan auto is slower than
// packet with one flow; the pairing into sshd has no flow row, and its
// auto row was skipped in lan.
func sampleSweep() SweepRun {
	fs := func(n int, agg, slowest, stall float64) FlowSample {
		return FlowSample{Flows: n, AggMbps: agg, SlowestMbps: slowest, StallSecs: stall, IntervalSecs: 0.1}
	}
	row := func(name string, ss ...FlowSample) SweepConfig { return SweepConfig{Name: name, Samples: ss} }
	const pair = "sshvpn⇄sshvpn-netstack/"
	return SweepRun{
		Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), WallSecs: 300, Mode: "default",
		Host: Host{CPUs: 2, CPUModel: "Test CPU", Kernel: "6.1", Go: "go1.26", Revision: "abc123"}, Flows: []int{1, 32, 128},
		Profiles: []SweepProfile{{
			Name: "lan", Desc: "veth", OpenSSH: "9.2", Secs: 3,
			Configs: []SweepConfig{
				row("raw", fs(1, 1000, 1000, 0), fs(32, 2000, 40, 0.5), fs(128, 2000, 10, 0)),
				row(pair+"packet", fs(1, 100, 100, 0), fs(32, 200, 5, 1), fs(128, 300, 1, 2)),
				row(pair+"auto", fs(1, 90, 90, 0), fs(32, 200, 5, 1), fs(128, 300, 1, 2)),
				row("sshvpn→sshd/packet", fs(1, 50, 50, 0), FlowSample{Flows: 32, Error: "iperf3: boom"}),
				{Name: "sshvpn→sshd/auto", Skipped: "no --transport"},
			},
		}, {
			Name: "wan40-loss1", Desc: "lossy", OpenSSH: "9.2", Secs: 3, Omit: 1, WallSecs: 125,
			Configs: []SweepConfig{
				row("raw", fs(1, 100, 100, 0), fs(32, 1000, 20, 0), fs(128, 1000, 5, 0.3)),
				row(pair+"flow", fs(1, 80, 80, 0), fs(32, 900, 10, 2.5), fs(128, 400, 2, 2)),
				{Name: pair + "packet", Error: "start: it broke"},
			},
		}},
	}
}

// findFloor finds the check of what for row with n flows in profile.
func findFloor(t *testing.T, fs []FloorCheck, profile, what, row string, n int) FloorCheck {
	t.Helper()
	for _, f := range fs {
		if f.Profile == profile && strings.HasPrefix(f.Floor, what) && f.Row == row && f.Flows == n {
			return f
		}
	}
	t.Fatalf("no %q floor for %s ×%d in %s", what, row, n, profile)
	return FloorCheck{}
}

func TestCheckFloors(t *testing.T) {
	fs := CheckFloors(sampleSweep())
	const flow, auto = "sshvpn⇄sshvpn-netstack/flow", "sshvpn⇄sshvpn-netstack/auto"
	for _, c := range []struct {
		profile, what, row string
		n                  int
		result             string
		value              float64
	}{
		{"wan40-loss1", "flow aggregate", flow, 1, "pass", 0.8}, // exactly the floor
		{"wan40-loss1", "flow aggregate", flow, 128, "FAIL", 0.4},
		{"wan40-loss1", "longest stall", flow, 1, "pass", 0},
		{"wan40-loss1", "longest stall", flow, 32, "FAIL", 2.5},
		{"wan40-loss1", "longest stall", flow, 128, "pass", 2}, // exactly the limit
		{"lan", "auto aggregate", auto, 1, "FAIL", 0.9},
		{"lan", "auto aggregate", auto, 32, "pass", 1},
		{"wan40-loss1", "flow aggregate", "sshvpn→sshd/flow", 1, "not measured: no sshvpn→sshd/flow row in this run", 0},
		{"wan40-loss1", "auto aggregate", auto, 1, "not measured: no " + auto + " row in this run", 0},
		{"lan", "auto aggregate", "sshvpn→sshd/auto", 32, "not measured: sshvpn→sshd/auto skipped", 0},
	} {
		f := findFloor(t, fs, c.profile, c.what, c.row, c.n)
		if f.Result != c.result || !near(f.Value, c.value) {
			t.Errorf("%s %s %s ×%d: %s at %v, want %s at %v", c.profile, c.what, c.row, c.n, f.Result, f.Value, c.result, c.value)
		}
	}
	// The flow floors apply where the loss is, not on the LAN.
	for _, f := range fs {
		if f.Profile == "lan" && !strings.HasPrefix(f.Floor, "auto") {
			t.Errorf("a flow floor checked in lan: %+v", f)
		}
	}
}

func TestSweepMarkdown(t *testing.T) {
	r := sampleSweep()
	r.Floors = CheckFloors(r)
	md := SweepMarkdown(r)
	for _, want := range []string{
		"wall time 5m0s",
		"consecutive 0.1 s intervals",
		"### wan40-loss1 — lossy (OpenSSH 9.2; iperf3 -R -t 3 -O 1; 2m5s)",
		"| configuration | ×1 aggregate | ×1 slowest | ×1 stall s | ×32 aggregate | ×32 slowest | ×32 stall s | ×128 aggregate | ×128 slowest | ×128 stall s |",
		// Each figure over raw's; a stall's only where raw's is not zero.
		"| sshvpn⇄sshvpn-netstack/flow | 80.0 0.800× | 80.0 0.800× | 0.0 | 900 0.900× | 10.0 0.500× | 2.5 | 400 0.400× | 2.00 0.400× | 2.0 6.67× |",
		"| sshvpn→sshd/packet | 50.0 0.050× | 50.0 0.050× | 0.0 | – | – | – | – | – | – |",
		"- sshvpn→sshd/packet ×32: iperf3: boom",
		// A skipped row keeps its place in the table.
		"| sshvpn→sshd/auto | – | – | – | – | – | – | – | – | – |",
		"- sshvpn⇄sshvpn-netstack/packet: start: it broke",
		"| flow aggregate over raw's | wan40-loss1 | sshvpn⇄sshvpn-netstack/flow | 128 | 0.40 | ≥ 0.5 | **FAIL** |",
		"| longest stall of any flow | wan40-loss1 | sshvpn⇄sshvpn-netstack/flow | 32 | 2.50 | ≤ 2 s | **FAIL** |",
		"| auto aggregate over packet's | lan | sshvpn⇄sshvpn-netstack/auto | 32 | 1.00 | ≥ 1 | pass |",
		"| – | ≥ 0.8 | not measured: no sshvpn→sshd/flow row in this run |",
		"Floors: 5 pass, 3 fail,",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

// TestListsFlag reads -h output as the flag package prints it, the way
// the sweep tells whether sshvpn connect has --transport.
func TestListsFlag(t *testing.T) {
	fs := flag.NewFlagSet("connect", flag.ContinueOnError)
	fs.String("transport", "packet", "how flows are carried: flow, packet or auto")
	fs.Bool("transport-stats", false, "a longer name that starts the same")
	fs.String("address", "", "mentions -transport in its text, not as a flag")
	var out strings.Builder
	fs.SetOutput(&out)
	fs.PrintDefaults()
	help := []byte("about connect\n" + out.String())
	if !ListsFlag(help, "transport") {
		t.Errorf("-transport not found in:\n%s", help)
	}
	fs2 := flag.NewFlagSet("connect", flag.ContinueOnError)
	fs2.Bool("transport-stats", false, "a longer name that starts the same")
	fs2.String("address", "", "see -transport")
	out.Reset()
	fs2.SetOutput(&out)
	fs2.PrintDefaults()
	if ListsFlag([]byte(out.String()), "transport") {
		t.Errorf("-transport found in help that has only -transport-stats and a mention:\n%s", out.String())
	}
}

// TestWriteSweep writes a full and a partial sweep: the full one as
// latest-sweep.*, the partial one as dev-sweep.* (never over the
// published figures), each JSON reading back as the run.
func TestWriteSweep(t *testing.T) {
	dir := t.TempDir()
	r := sampleSweep()
	r.Floors = CheckFloors(r)
	for _, c := range []struct {
		partial bool
		base    string
	}{{false, "latest-sweep"}, {true, "dev-sweep"}} {
		written, err := WriteSweep(dir, r, c.partial)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{filepath.Join(dir, "results", c.base+".json"), filepath.Join(dir, "results", c.base+".md")}
		if !slices.Equal(written, want) {
			t.Errorf("partial=%v wrote %v, want %v", c.partial, written, want)
		}
		js, err := os.ReadFile(want[0])
		if err != nil {
			t.Fatal(err)
		}
		var back SweepRun
		if err := json.Unmarshal(js, &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, r) {
			t.Errorf("%s.json reads back as\n%+v\nwant\n%+v", c.base, back, r)
		}
	}
}
