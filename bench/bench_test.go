//go:build integration

package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// The binaries under test and the harness's helpers, built once by TestMain.
var (
	sshvpnBin     string
	sshchannelBin string
	socksfwdBin   string
	delaylinkBin  string
	delaylinkErr  string // why delaylinkBin is empty
)

func TestMain(m *testing.M) {
	t0 := time.Now()
	dir, err := os.MkdirTemp("", "sshvpn-bench-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	build := func(name, pkg string) (string, error) {
		bin := filepath.Join(dir, name)
		out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
		return bin, nil
	}
	for bin, pkg := range map[*string]string{&sshchannelBin: "./sshchannel", &socksfwdBin: "./socksfwd"} {
		if *bin, err = build(filepath.Base(pkg), pkg); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	// delaylink is only needed by the long-fat-path profiles; without it
	// they are reported as not measured.
	if delaylinkBin, err = build("delaylink", "./delaylink"); err != nil {
		delaylinkErr = err.Error()
	}
	fmt.Printf("bench: helpers built in %v\n", time.Since(t0).Round(time.Millisecond))
	nstest.Main(m, &sshvpnBin, func() { os.RemoveAll(dir) })
}

// profileSpec is one network path and how much to measure through it.
type profileSpec struct {
	name, desc string
	wire       bool // client ⇄ gateway through delaylink instead of a veth
	delay      time.Duration
	loss       float64
	rounds     int
	secs, omit int // iperf3 -t, -O
	tests      []string
	// without names configurations this profile leaves out.
	without []string
}

// plan is what one run measures.
type plan struct {
	mode     string // BENCH
	versions []nstest.OpenSSH
	profiles []profileSpec
	configs  []configSpec
	partial  bool // filtered by BENCH_*: results go to dev.*, not latest.*
}

// The profiles. lan is the main table: every test, 3 rounds of 2 s,
// which is long enough on a veth (TCP is at full speed within
// milliseconds at sub-millisecond RTTs) and keeps `make bench` within its
// 15 minutes. The 40 ms profiles run one stream each way for 2 s after
// 1 s of slow start (-O 1, not counted): at 40 ms a second is 25 round
// trips, enough for slow start to reach any window these paths allow.
// They leave out openssh-aesgcm: it tells the cipher's share of OpenSSH's
// cost apart from the rest, a CPU question the lan profile answers, while
// at 40 ms windows and queues decide. They leave out the ethernet rows
// too: layer 2 changes what each packet costs, which the lan profile
// measures, not how the path's delay and loss treat the tunnel, and their
// 15 minutes have no room for five more rows twice.
var (
	lanProfile  = profileSpec{name: "lan", desc: "veth, no added delay", rounds: 3, secs: 2, tests: []string{Up1, Up4, Down1, Down4}}
	wanProfile  = profileSpec{name: "wan40", desc: "delaylink, 40 ms RTT", wire: true, delay: 20 * time.Millisecond, rounds: 3, secs: 2, omit: 1, tests: []string{Up1, Down1}, without: lanOnly()}
	lossProfile = profileSpec{name: "wan40-loss1", desc: "delaylink, 40 ms RTT, 1% loss each way", wire: true, delay: 20 * time.Millisecond, loss: 0.01, rounds: 3, secs: 2, omit: 1, tests: []string{Up1, Down1}, without: lanOnly()}
)

// lanOnly are the rows only the lan profile measures.
func lanOnly() []string {
	names := []string{"openssh-aesgcm"}
	for _, c := range configs {
		if L3Of(c.name) != "" {
			names = append(names, c.name)
		}
	}
	return names
}

// quickConfigs are BENCH=quick's rows: the anchor, the two ceilings, one
// row per sshvpn backend, and the rootless client into the rootless
// gateway with its own anchor (without ssh-D its row has no ratios).
var quickConfigs = []string{"raw", "ssh-channel", "openssh", "ssh→sshvpn-kernel", "sshvpn⇄sshvpn-kernel", "sshvpn⇄sshvpn-netstack",
	"ssh-D", "sshvpn-D→sshvpn-netstack"}

// makePlan reads BENCH (default, quick, full) and the development
// overrides BENCH_PROFILES, BENCH_CONFIGS (comma-separated names; "->" and
// "<->" stand for → and ⇄), BENCH_ROUNDS and BENCH_SECS.
func makePlan(b *testing.B) plan {
	p := plan{mode: os.Getenv("BENCH"), configs: configs, profiles: []profileSpec{lanProfile, wanProfile, lossProfile}}
	all := nstest.OpenSSHs(b)
	p.versions = all[:1] // Debian's, 9.2 on bookworm
	switch p.mode {
	case "", "default":
		p.mode = "default"
	case "full":
		p.versions = all
	case "quick":
		p.partial = true
		q := lanProfile
		q.rounds, q.tests = 1, []string{Up1, Down1}
		p.profiles = []profileSpec{q}
		p.configs = pick(b, quickConfigs)
	default:
		b.Fatalf("BENCH=%q: want default, quick or full", p.mode)
	}
	if v := os.Getenv("BENCH_PROFILES"); v != "" {
		p.partial = true
		var ps []profileSpec
		for _, n := range strings.Split(v, ",") {
			i := slices.IndexFunc(p.profiles, func(x profileSpec) bool { return x.name == n })
			if i < 0 {
				b.Fatalf("BENCH_PROFILES: no profile %q in BENCH=%s", n, p.mode)
			}
			ps = append(ps, p.profiles[i])
		}
		p.profiles = ps
	}
	if v := os.Getenv("BENCH_CONFIGS"); v != "" {
		p.partial = true
		p.configs = pick(b, strings.Split(v, ","))
	}
	for env, set := range map[string]func(*profileSpec, int){
		"BENCH_ROUNDS": func(x *profileSpec, n int) { x.rounds = n },
		"BENCH_SECS":   func(x *profileSpec, n int) { x.secs = n },
	} {
		if v := os.Getenv(env); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				b.Fatalf("%s=%q: want a positive number", env, v)
			}
			p.partial = true
			for i := range p.profiles {
				set(&p.profiles[i], n)
			}
		}
	}
	return p
}

// pick returns the named configurations, in the tables' order.
func pick(b *testing.B, names []string) []configSpec { return pickFrom(b, configs, names) }

// pickFrom returns the named rows of all, in all's order.
func pickFrom(b *testing.B, all []configSpec, names []string) []configSpec {
	norm := strings.NewReplacer("<->", "⇄", "->", "→")
	var out []configSpec
	for _, c := range all {
		for _, n := range names {
			if norm.Replace(strings.TrimSpace(n)) == c.name {
				out = append(out, c)
			}
		}
	}
	if len(out) != len(names) {
		var known []string
		for _, c := range all {
			known = append(known, c.name)
		}
		b.Fatalf("unknown configuration in %q; known: %s", names, strings.Join(known, ", "))
	}
	return out
}

// BenchmarkPaths is the whole comparison: every configuration, every
// profile, interleaved rounds, then the tables, the JSON and the chart
// under results/. Run it once: go test -tags integration -run '^$'
// -bench Paths -benchtime 1x -timeout 30m ./bench/ (see README.md).
func BenchmarkPaths(b *testing.B) {
	nstest.RequireRoot(b)
	for _, tool := range []string{"ip", "iperf3", "ping", "setpriv"} {
		nstest.RequireTool(b, tool)
	}
	if b.N > 1 {
		// -benchtime Nx would repeat everything; rounds are BENCH_ROUNDS.
		b.Logf("measured once already (b.N=1); not repeating for b.N=%d", b.N)
		return
	}
	pl := makePlan(b)
	run := Run{Started: time.Now(), Mode: pl.mode, Host: hostInfo()}
	var failed []string
	for _, o := range pl.versions {
		for _, ps := range pl.profiles {
			if ps.wire && delaylinkBin == "" {
				if os.Getenv("CI") == "true" {
					b.Fatalf("CI=true but delaylink does not build: %s", delaylinkErr)
				}
				run.Notes = append(run.Notes, fmt.Sprintf("%s: not measured: delaylink does not build: %s", ps.name, firstLine(delaylinkErr)))
				continue
			}
			cs := slices.DeleteFunc(slices.Clone(pl.configs), func(c configSpec) bool { return slices.Contains(ps.without, c.name) })
			b.Logf("profile %s, OpenSSH %s: %d configurations × %d tests × %d rounds", ps.name, o.Version, len(cs), len(ps.tests), ps.rounds)
			p, notes, errs := runProfile(b, o, ps, cs)
			run.Profiles = append(run.Profiles, p)
			run.Notes = append(run.Notes, notes...)
			failed = append(failed, errs...)
		}
	}
	run.WallSecs = time.Since(run.Started).Seconds()
	md := Markdown(run)
	fmt.Print("\n" + md)
	written, err := WriteResults(".", run, pl.partial, !pl.partial)
	if err != nil {
		b.Error(err)
	}
	progress("wrote %s", strings.Join(written, ", "))
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(run.WallSecs, "wall-s")
	if len(failed) > 0 {
		b.Errorf("configurations that failed:\n%s", strings.Join(failed, "\n"))
	}
}

// live is a configuration's state during a profile.
type live struct {
	spec configSpec
	path *path
	res  *Config
	dead bool
}

// runProfile starts every configuration, then runs the rounds: round r
// measures every configuration before round r+1 begins, starting one
// configuration later each round, so that slow drift of the machine
// (another tenant, thermal state) spreads over all rows instead of
// favouring whichever came first. Everything the profile started is torn
// down when it returns.
func runProfile(b *testing.B, o nstest.OpenSSH, ps profileSpec, specs []configSpec) (p Profile, notes, failed []string) {
	tb := &softTB{TB: b}
	defer tb.cleanup()
	p = Profile{Name: ps.name, Desc: ps.desc, OpenSSH: o.Version, Rounds: ps.rounds, Secs: ps.secs, Omit: ps.omit, Tests: ps.tests}
	ls := make([]*live, len(specs))
	for i, spec := range specs {
		l := &live{spec: spec, res: &Config{Name: spec.name}}
		ls[i] = l
		t0 := time.Now()
		err := try(func() { l.path = spec.start(&env{tb: tb, o: o, pr: ps}) })
		if err != nil {
			progress("%s: %s did not start: %v", ps.name, spec.name, firstLine(err.Error()))
		} else {
			progress("%s: %s started in %v", ps.name, spec.name, time.Since(t0).Round(time.Millisecond))
		}
		if a, ok := err.(abort); ok && a.skip {
			notes = append(notes, fmt.Sprintf("%s (%s): skipped: %s", spec.name, ps.name, a.msg))
			l.dead = true
		} else if err != nil {
			l.fail(&failed, ps, "start: "+err.Error())
		}
	}
	for r := range ps.rounds {
		for k := range ls {
			l := ls[(k+r)%len(ls)]
			if !l.dead {
				t0 := time.Now()
				runRound(tb, l, ps, r, &failed)
				progress("%s: round %d/%d: %s in %v", ps.name, r+1, ps.rounds, l.spec.name, time.Since(t0).Round(time.Millisecond))
			}
		}
	}
	for _, l := range ls {
		if l.path != nil {
			l.res.Cipher = l.path.cipher()
		}
		if l.path == nil && l.dead && l.res.Error == "" {
			continue // skipped: a note says why
		}
		p.Configs = append(p.Configs, *l.res)
	}
	return p, notes, failed
}

// fail marks a configuration dead for the rest of the profile.
func (l *live) fail(failed *[]string, ps profileSpec, msg string) {
	l.dead = true
	l.res.Error = firstLine(msg)
	*failed = append(*failed, fmt.Sprintf("%s (%s): %s", l.spec.name, ps.name, msg))
}

// runRound measures one configuration once: (re)connect, idle RTT, every
// test (the download ×1 one with pings alongside), the gateway's memory.
func runRound(tb *softTB, l *live, ps profileSpec, r int, failed *[]string) {
	p := l.path
	if p.connect != nil {
		var d time.Duration
		err := try(func() {
			var cerr error
			if d, cerr = p.connect(); cerr != nil {
				tb.Fatal(cerr)
			}
		})
		if err != nil {
			l.fail(failed, ps, fmt.Sprintf("round %d: connect: %v", r+1, err))
			return
		}
		l.res.ConnectMS = append(l.res.ConnectMS, float64(d.Microseconds())/1000)
		progress("%s: round %d: %s connected in %v", ps.name, r+1, l.spec.name, d.Round(time.Millisecond))
	}
	l.res.NoCPU = p.noCPU
	if p.pingTarget == "" {
		l.res.NoPing = p.noPing
	} else if s, err := pingRun(context.Background(), p.client, p.pingTarget, 31, true); err != nil {
		progress("%s: round %d: %s idle ping: %v", ps.name, r+1, l.spec.name, err)
	} else {
		progress("%s: round %d: %s idle ping: %d/%d replies", ps.name, r+1, l.spec.name, len(s.RTTms), s.Sent)
		s.Round = r
		l.res.PingIdle = append(l.res.PingIdle, s)
	}
	for _, t := range ps.tests {
		if !runs(l.spec.name, t) {
			continue
		}
		t0 := time.Now()
		s, ping := runIperf(p, ps, t, t == Down1 && p.pingTarget != "")
		if s.Error != "" && p.alive() == nil {
			// iperf3 -s refuses a test while it still winds the last one
			// down ("the server is busy"), which a proxy's lingering
			// sockets can cause: restart it and try once more.
			tb.Logf("%s (%s) round %d %s: %s; retrying", l.spec.name, ps.name, r+1, t, s.Error)
			if err := try(p.startIperf); err != nil {
				l.fail(failed, ps, "restart iperf3 -s: "+err.Error())
				return
			}
			s, ping = runIperf(p, ps, t, t == Down1 && p.pingTarget != "")
		}
		s.Round = r
		l.res.Throughput = append(l.res.Throughput, s)
		progress("%s: round %d: %s %s: %.1f Mbit/s in %v %s", ps.name, r+1, l.spec.name, t, s.Mbps, time.Since(t0).Round(time.Millisecond), s.Error)
		if ping != nil {
			ping.Round = r
			l.res.PingLoaded = append(l.res.PingLoaded, *ping)
		}
		if err := p.alive(); err != nil {
			l.fail(failed, ps, fmt.Sprintf("round %d, %s: %v", r+1, t, err))
			return
		}
		if s.Error != "" {
			*failed = append(*failed, fmt.Sprintf("%s (%s) round %d %s: %s", l.spec.name, ps.name, r+1, t, s.Error))
			if err := try(p.startIperf); err != nil {
				l.fail(failed, ps, "restart iperf3 -s: "+err.Error())
				return
			}
		}
	}
	if rss := nsPeakRSS(p.gw); rss > 0 {
		l.res.GatewayRSS = append(l.res.GatewayRSS, rss)
	}
}

// hostInfo describes the machine and the tree.
func hostInfo() Host {
	h := Host{CPUs: runtime.NumCPU(), CPUModel: cpuModel(), Go: runtime.Version()}
	if out, err := exec.Command("uname", "-r").Output(); err == nil {
		h.Kernel = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("git", "describe", "--always", "--dirty").Output(); err == nil {
		h.Revision = strings.TrimSpace(string(out))
	}
	return h
}

// cpuModel returns /proc/cpuinfo's first "model name", or "".
func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

var serveCiphersRE = regexp.MustCompile(`-ciphers string\s+[^\n]*\(default "([^"]+)"\)`)

// serveCipher is what sshvpn connect and sshvpn serve agree on, which
// neither logs: x/crypto/ssh's client takes its first preference
// (ssh.SupportedAlgorithms lists them in order) that the gateway offers
// (serve --ciphers, read from its --help).
func serveCipher() string {
	out, _ := exec.Command(sshvpnBin, "serve", "--help").CombinedOutput()
	m := serveCiphersRE.FindSubmatch(out)
	if m == nil {
		return "?"
	}
	offer := strings.Split(string(m[1]), ",")
	for _, c := range ssh.SupportedAlgorithms().Ciphers {
		if slices.Contains(offer, c) {
			return c
		}
	}
	return "?"
}

// progress prints a line as the run goes: a benchmark's b.Log shows only
// at its end, and this one takes minutes.
func progress(format string, args ...any) {
	fmt.Printf("bench: %4.0fs "+format+"\n", append([]any{time.Since(progressStart).Seconds()}, args...)...)
}

// progressStart is when the test binary started.
var progressStart = time.Now()

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return l
}
