//go:build integration

package main

import (
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// bin is the delaylink binary TestMain builds.
var bin string

// TestMain builds the real binary once, so the tests run the program as the
// harness does, and fails the run if a namespace outlives the tests.
func TestMain(m *testing.M) { nstest.MainBuilding(m, ".", &bin, nil) }

// link starts delaylink with args and wires it the way the harness does: the
// taps are born in a namespace of their own (so their names never meet the
// host's devices), then moved into a and b, addressed 198.18.9.1/24 and
// 198.18.9.2/24 and set up. Cleanup kills the process by PID, then deletes the
// namespaces, also when the test fails (nstest).
func link(t *testing.T, args ...string) (a *nstest.NS, p *nstest.Proc) {
	t.Helper()
	nstest.RequireRoot(t)
	nstest.RequireTool(t, "ip")
	nstest.RequireTool(t, "ping")
	home, a, b := nstest.New(t), nstest.New(t), nstest.New(t)
	p = home.Start(t, append([]string{bin, "-a", "dla", "-b", "dlb"}, args...)...)
	nstest.WaitFor(t, 10*time.Second, "delaylink to print ready", func() bool {
		return strings.HasPrefix(p.Log(), "ready\n") || p.Exited()
	})
	if p.Exited() {
		t.Fatalf("delaylink exited before ready:\n%s", p.Log())
	}
	for _, end := range []struct {
		ns        *nstest.NS
		dev, addr string
	}{{a, "dla", "198.18.9.1/24"}, {b, "dlb", "198.18.9.2/24"}} {
		home.Run(t, "ip", "link", "set", end.dev, "netns", end.ns.Name)
		end.ns.Run(t, "ip", "addr", "add", end.addr, "dev", end.dev)
		end.ns.Run(t, "ip", "link", "set", end.dev, "up")
	}
	return a, p
}

// ping runs ping in ns with args and returns its summary: packets sent and
// received and the average RTT (0 when none came back).
func ping(t *testing.T, ns *nstest.NS, args ...string) (sent, received int, avg time.Duration) {
	t.Helper()
	out, _ := ns.Cmd(append([]string{"ping", "-n", "-q"}, append(args, "198.18.9.2")...)...).CombinedOutput()
	m := regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("ping %v: no summary:\n%s", args, out)
	}
	sent, _ = strconv.Atoi(m[1])
	received, _ = strconv.Atoi(m[2])
	if r := regexp.MustCompile(`= [\d.]+/([\d.]+)/`).FindStringSubmatch(string(out)); r != nil {
		ms, _ := strconv.ParseFloat(r[1], 64)
		avg = time.Duration(ms * float64(time.Millisecond))
	}
	t.Logf("ping %v: %d sent, %d received, avg RTT %v", args, sent, received, avg)
	return sent, received, avg
}

// counts is one direction's line of the exit summary.
type counts struct{ forwarded, lost, overflow int }

// stop sends SIGTERM, expects exit 0 and returns the summary per direction.
func stop(t *testing.T, p *nstest.Proc) map[string]counts {
	t.Helper()
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(10 * time.Second); err != nil {
		t.Fatalf("delaylink after SIGTERM: %v\n%s", err, p.Log())
	}
	re := regexp.MustCompile(`(?m)^delaylink: (\S+) forwarded=(\d+) lost=(\d+) overflow=(\d+) `)
	got := map[string]counts{}
	for _, m := range re.FindAllStringSubmatch(p.Log(), -1) {
		var c counts
		c.forwarded, _ = strconv.Atoi(m[2])
		c.lost, _ = strconv.Atoi(m[3])
		c.overflow, _ = strconv.Atoi(m[4])
		got[m[1]] = c
	}
	if len(got) != 2 {
		t.Fatalf("want a summary line per direction, got:\n%s", p.Log())
	}
	t.Logf("summary: %+v", got)
	return got
}

// TestDelay: every frame is held 20 ms each way, so the RTT is 40 ms and
// never less; nothing is lost.
func TestDelay(t *testing.T) {
	a, p := link(t, "-delay", "20ms")
	ping(t, a, "-c", "1", "-W", "2") // resolve ARP first: it costs its own round trip
	sent, received, avg := ping(t, a, "-c", "20", "-i", "0.05", "-W", "2")
	if received != sent {
		t.Errorf("%d of %d pings answered without -loss", received, sent)
	}
	// The scheduler only ever adds delay; a loaded CI machine adds a few ms.
	if avg < 39800*time.Microsecond || avg > 50*time.Millisecond {
		t.Errorf("average RTT %v, want 40 ms (40–50)", avg)
	}
	for dir, c := range stop(t, p) {
		if c.forwarded < received || c.lost != 0 || c.overflow != 0 {
			t.Errorf("%s: %+v, want at least %d forwarded and no drops", dir, c, received)
		}
	}
}

// TestLoss: -loss 0.1 drops 10% of each direction, so about 19% of pings
// (request or reply) go unanswered. The seed fixes the pattern; the bounds
// only allow for the few ARP and IPv6 frames that also draw from it.
func TestLoss(t *testing.T) {
	a, p := link(t, "-loss", "0.1", "-seed", "7")
	sent, received, _ := ping(t, a, "-c", "200", "-i", "0.005", "-W", "1")
	if loss := 1 - float64(received)/float64(sent); loss < 0.08 || loss > 0.32 {
		t.Errorf("ping loss %.1f%%, want about 19%%", 100*loss)
	}
	for dir, c := range stop(t, p) {
		if f := float64(c.lost) / float64(c.lost+c.forwarded); f < 0.03 || f > 0.2 || c.overflow != 0 {
			t.Errorf("%s: %+v: lost %.1f%%, want about 10%% and no overflow", dir, c, 100*f)
		}
	}
}

// TestLimit: with room for 4 frames, a burst of pings into a 100 ms delay
// overflows the queue, which drops and counts instead of growing.
func TestLimit(t *testing.T) {
	a, p := link(t, "-delay", "100ms", "-limit", "4")
	ping(t, a, "-c", "1", "-W", "2")
	sent, received, _ := ping(t, a, "-c", "50", "-i", "0.002", "-W", "1")
	if received == 0 || received == sent {
		t.Errorf("%d of %d pings answered, want some but not all", received, sent)
	}
	c := stop(t, p)["dla->dlb"]
	if c.overflow == 0 || c.forwarded+c.overflow < sent {
		t.Errorf("dla->dlb: %+v, want overflows accounting for the %d unanswered", c, sent-received)
	}
}
