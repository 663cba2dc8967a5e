//go:build integration

package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// sweepRows are the sweep's rows, in table order: the two references,
// then each sshvpn pairing with every transport. A row's name is its
// pairing and its transport, joined by transportSep.
var sweepRows = []configSpec{
	{"raw", startRaw},
	{"sshuttle", startSSHuttle},
	transportRow(PairingServe, TransportPacket, connectToNetstack),
	transportRow(PairingServe, TransportFlow, connectToNetstack),
	transportRow(PairingServe, TransportAuto, connectToNetstack),
	transportRow(PairingSSHD, TransportPacket, startConnectToSSHD),
	transportRow(PairingSSHD, TransportFlow, startConnectToSSHD),
	transportRow(PairingSSHD, TransportAuto, startConnectToSSHD),
}

// connectToNetstack is sshvpn connect into the default (rootless)
// gateway, which takes both packets and direct-tcpip channels.
func connectToNetstack(e *env) *path { return startConnectToServe(e, true) }

// transportRow is a pairing's row run with --transport transport. Until
// sshvpn connect has the flag, its packet row runs without it (packets
// are all it carries) and the others are skipped with a note.
func transportRow(pairing, transport string, start func(*env) *path) configSpec {
	return configSpec{name: pairing + transportSep + transport, start: func(e *env) *path {
		switch {
		case hasTransportFlag():
			c := *e
			c.transport = transport
			e = &c
		case transport != TransportPacket:
			e.tb.Skipf("sshvpn connect has no --transport flag (its -h lists none): nothing to measure until the %s transport lands", transport)
		}
		return start(e)
	}}
}

// hasTransportFlag reports whether the sshvpn under test lists
// --transport in `sshvpn connect -h`.
var hasTransportFlag = sync.OnceValue(func() bool {
	out, _ := exec.Command(sshvpnBin, "connect", "-h").CombinedOutput()
	return ListsFlag(out, "transport")
})

// The sweep's shape. Three seconds measured, so that a stall of more
// than FlowStallLimit can show at all; one round, to fit make bench.
var sweepFlows = []int{1, 32, 128}

const (
	sweepSecs     = 3
	sweepInterval = "0.1" // iperf3's least -i
)

// sweepPlan is what one sweep measures.
type sweepPlan struct {
	mode     string
	profiles []profileSpec
	rows     []configSpec
	flows    []int
	partial  bool // filtered: results go to dev-sweep.*
}

// makeSweepPlan reads BENCH (quick: lan, 1 and 32 flows, raw and the
// pairing into sshvpn) and the development overrides BENCH_PROFILES,
// BENCH_SECS, BENCH_SWEEP_CONFIGS (row names; "->" and "<->" stand for →
// and ⇄) and BENCH_FLOWS (comma-separated counts, at most 128).
func makeSweepPlan(b *testing.B) sweepPlan {
	p := sweepPlan{mode: os.Getenv("BENCH"), rows: sweepRows, flows: sweepFlows}
	for _, ps := range []profileSpec{lanProfile, wanProfile, lossProfile} {
		ps.rounds, ps.secs, ps.tests, ps.without = 1, sweepSecs, nil, nil
		p.profiles = append(p.profiles, ps)
	}
	switch p.mode {
	case "", "default", "full":
		p.mode = orText(p.mode, "default")
	case "quick":
		p.partial = true
		p.profiles, p.flows = p.profiles[:1], []int{1, 32}
		p.rows = pickFrom(b, sweepRows, []string{SweepReference, PairingServe + transportSep + TransportPacket, PairingServe + transportSep + TransportFlow})
	default:
		b.Fatalf("BENCH=%q: want default, quick or full", p.mode)
	}
	if v := os.Getenv("BENCH_PROFILES"); v != "" {
		p.partial = true
		p.profiles = slices.DeleteFunc(p.profiles, func(x profileSpec) bool { return !slices.Contains(strings.Split(v, ","), x.name) })
		if len(p.profiles) == 0 {
			b.Fatalf("BENCH_PROFILES=%q names no profile of the sweep (lan, wan40, wan40-loss1)", v)
		}
	}
	if v := os.Getenv("BENCH_SWEEP_CONFIGS"); v != "" {
		p.partial = true
		p.rows = pickFrom(b, sweepRows, strings.Split(v, ","))
	}
	if v := os.Getenv("BENCH_FLOWS"); v != "" {
		p.partial = true
		p.flows = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 || n > 128 {
				b.Fatalf("BENCH_FLOWS: %q is not a flow count from 1 to 128 (iperf3's -P limit)", f)
			}
			p.flows = append(p.flows, n)
		}
	}
	if v := os.Getenv("BENCH_SECS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("BENCH_SECS=%q: want a positive number", v)
		}
		p.partial = true
		for i := range p.profiles {
			p.profiles[i].secs = n
		}
	}
	return p
}

// BenchmarkSweep is the loss sweep: N parallel downloads through raw,
// sshuttle and each sshvpn pairing with every transport, on every
// profile, then the tables and the floors under results/latest-sweep.*.
// Run it once: go test -tags integration -run '^$' -bench Sweep
// -benchtime 1x -timeout 30m ./bench/ (see README.md).
func BenchmarkSweep(b *testing.B) {
	nstest.RequireRoot(b)
	for _, tool := range []string{"ip", "iperf3", "setpriv"} {
		nstest.RequireTool(b, tool)
	}
	if b.N > 1 {
		b.Logf("measured once already (b.N=1); not repeating for b.N=%d", b.N)
		return
	}
	pl := makeSweepPlan(b)
	o := nstest.OpenSSHs(b)[0]
	run := SweepRun{Started: time.Now(), Mode: pl.mode, Host: hostInfo(), Flows: pl.flows}
	if !hasTransportFlag() {
		run.Notes = append(run.Notes, "sshvpn connect has no --transport flag: the packet rows ran without it, the flow and auto rows not at all")
	}
	var failed []string
	for _, ps := range pl.profiles {
		if ps.wire && delaylinkBin == "" {
			if os.Getenv("CI") == "true" {
				b.Fatalf("CI=true but delaylink does not build: %s", delaylinkErr)
			}
			run.Notes = append(run.Notes, fmt.Sprintf("%s: not measured: delaylink does not build: %s", ps.name, firstLine(delaylinkErr)))
			continue
		}
		t0 := time.Now()
		p, notes, errs := runSweepProfile(b, o, ps, pl)
		p.WallSecs = time.Since(t0).Seconds()
		progress("sweep: %s took %v", ps.name, time.Since(t0).Round(time.Second))
		run.Profiles = append(run.Profiles, p)
		for _, n := range notes {
			if !slices.Contains(run.Notes, n) {
				run.Notes = append(run.Notes, n)
			}
		}
		failed = append(failed, errs...)
	}
	run.WallSecs = time.Since(run.Started).Seconds()
	run.Floors = CheckFloors(run)
	fmt.Print("\n" + SweepMarkdown(run))
	written, err := WriteSweep(".", run, pl.partial)
	if err != nil {
		b.Error(err)
	}
	progress("sweep: wrote %s; wall time %v", strings.Join(written, ", "), time.Duration(run.WallSecs*float64(time.Second)).Round(time.Second))
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(run.WallSecs, "wall-s")
	if len(failed) > 0 {
		b.Errorf("sweep rows that failed:\n%s", strings.Join(failed, "\n"))
	}
}

// sweepLive is a sweep row's state during a profile.
type sweepLive struct {
	spec configSpec
	path *path
	res  *SweepConfig
	dead bool
}

func (l *sweepLive) fail(failed *[]string, ps profileSpec, msg string) {
	l.dead = true
	l.res.Error = firstLine(msg)
	*failed = append(*failed, fmt.Sprintf("%s (%s): %s", l.spec.name, ps.name, msg))
}

// runSweepProfile starts every row (and its client), then runs each flow
// count through every row, starting one row later for each count so that
// a drift of the machine spreads over the rows. Everything the profile
// started is torn down when it returns.
func runSweepProfile(b *testing.B, o nstest.OpenSSH, ps profileSpec, pl sweepPlan) (p SweepProfile, notes, failed []string) {
	tb := &softTB{TB: b}
	defer tb.cleanup()
	p = SweepProfile{Name: ps.name, Desc: ps.desc, OpenSSH: o.Version, Secs: ps.secs, Omit: ps.omit}
	ls := make([]*sweepLive, len(pl.rows))
	for i, spec := range pl.rows {
		l := &sweepLive{spec: spec, res: &SweepConfig{Name: spec.name}}
		ls[i] = l
		t0 := time.Now()
		err := try(func() {
			l.path = spec.start(&env{tb: tb, o: o, pr: ps})
			if l.path.connect != nil {
				if _, err := l.path.connect(); err != nil {
					tb.Fatal(err)
				}
			}
		})
		switch a, ok := err.(abort); {
		case ok && a.skip:
			// Named without the profile: a row that cannot run skips
			// every profile alike, and one note says so.
			notes = append(notes, fmt.Sprintf("%s: skipped: %s", spec.name, a.msg))
			l.dead, l.res.Skipped = true, a.msg
		case err != nil:
			progress("%s: %s did not start: %v", ps.name, spec.name, firstLine(err.Error()))
			l.fail(&failed, ps, "start: "+err.Error())
		default:
			progress("%s: %s started in %v", ps.name, spec.name, time.Since(t0).Round(time.Millisecond))
		}
	}
	for k, n := range pl.flows {
		for i := range ls {
			if l := ls[(i+k)%len(ls)]; !l.dead {
				runSweepTest(tb, l, ps, n, &failed)
			}
		}
	}
	for _, l := range ls {
		p.Configs = append(p.Configs, *l.res)
	}
	return p, notes, failed
}

// runSweepTest runs n parallel downloads through l once, retrying once
// when iperf3 failed while the path stayed up (its server may still be
// winding the last test down). A failed try stays among the samples, its
// error listed under the table: a test that hangs is a finding too.
func runSweepTest(tb *softTB, l *sweepLive, ps profileSpec, n int, failed *[]string) {
	s := runFlows(l.path, ps, n)
	if s.Error != "" && l.path.alive() == nil {
		tb.Logf("%s (%s) ×%d: %s; retrying", l.spec.name, ps.name, n, s.Error)
		progress("%s: %s ×%d failed, retrying: %s", ps.name, l.spec.name, n, s.Error)
		s.Error = "first try (retried): " + s.Error
		l.res.Samples = append(l.res.Samples, s)
		if err := try(l.path.startIperf); err != nil {
			l.fail(failed, ps, "restart iperf3 -s: "+err.Error())
			return
		}
		s = runFlows(l.path, ps, n)
	}
	l.res.Samples = append(l.res.Samples, s)
	progress("%s: %s ×%d: %.1f Mbit/s, slowest %.2f, longest stall %.1f s, in %.1f s %s",
		ps.name, l.spec.name, n, s.AggMbps, s.SlowestMbps, s.StallSecs, s.WallSecs, s.Error)
	if err := l.path.alive(); err != nil {
		l.fail(failed, ps, fmt.Sprintf("×%d: %v", n, err))
		return
	}
	if s.Error != "" {
		*failed = append(*failed, fmt.Sprintf("%s (%s) ×%d: %s", l.spec.name, ps.name, n, s.Error))
		if err := try(l.path.startIperf); err != nil {
			l.fail(failed, ps, "restart iperf3 -s: "+err.Error())
		}
	}
}

// runFlows runs one iperf3 download of n parallel streams from the LAN
// host to the client host through p, sampled every sweepInterval.
func runFlows(p *path, pr profileSpec, n int) FlowSample {
	args := []string{"iperf3", "-c", p.target, "-p", p.port, "-R", "-P", strconv.Itoa(n),
		"-t", strconv.Itoa(pr.secs), "-i", sweepInterval, "-J", "--connect-timeout", "10000"}
	if pr.omit > 0 {
		args = append(args, "-O", strconv.Itoa(pr.omit))
	}
	// iperf3 connects its streams one after another: 128 round trips at
	// 40 ms, and a lost SYN costs a second; the slowest test took 19 s in
	// all, and one that hung would go on for ever.
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(pr.secs+pr.omit)*time.Second+40*time.Second)
	defer cancel()
	t0 := time.Now()
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", p.client.Name}, args...)...).Output()
	wall := time.Since(t0)
	s, perr := ParseFlows(out)
	switch {
	case perr != nil && err != nil && !strings.HasPrefix(perr.Error(), "iperf3: "):
		s.Error = fmt.Sprintf("iperf3 %s after %v: %v", strings.Join(args[1:], " "), wall.Round(time.Millisecond), err)
	case perr != nil:
		s.Error = perr.Error()
	}
	s.Flows, s.WallSecs = n, wall.Seconds()
	return s
}
