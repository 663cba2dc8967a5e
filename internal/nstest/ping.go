package nstest

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// pingArgs builds the ping command for addr, adding -6 for IPv6 literals;
// quiet prints only the summary.
func pingArgs(addr string, count int, wait, interval string, quiet bool) []string {
	args := []string{"ping", "-n", "-c", strconv.Itoa(count), "-W", wait, "-i", interval}
	if quiet {
		args = append(args, "-q")
	}
	if a, err := netip.ParseAddr(addr); err == nil && a.Is6() && !a.Is4In6() {
		args = append(args, "-6")
	}
	return append(args, addr)
}

// Ping sends count echo requests from inside from to addr (ping -c count -W 2
// -i 0.2, -6 for IPv6) and fails the test, showing ping's output, when none is
// answered. Partial loss passes: this proves reachability, not quality.
func Ping(t testing.TB, from *NS, addr string, count int) {
	t.Helper()
	if out, err := from.run(pingArgs(addr, count, "2", "0.2", true)...); err != nil {
		t.Fatalf("in %s: ping %s: %v\n%s", from.Name, addr, err, strings.TrimSpace(out))
	}
}

// CanPing reports whether a single echo request from inside from to addr is
// answered within one second.
func CanPing(from *NS, addr string) bool {
	_, err := from.run(pingArgs(addr, 1, "1", "0.2", true)...)
	return err == nil
}

// PingRTTs sends count echo requests from inside from to addr, interval
// apart (root may go below ping's 200 ms), and returns the round trip of
// every reply. It fails the test when ping fails or a reply cannot be read.
func PingRTTs(t testing.TB, from *NS, addr string, count int, interval time.Duration) []time.Duration {
	t.Helper()
	out, err := from.run(pingArgs(addr, count, "2", strconv.FormatFloat(interval.Seconds(), 'f', 3, 64), false)...)
	if err != nil {
		t.Fatalf("in %s: ping %s: %v\n%s", from.Name, addr, err, strings.TrimSpace(out))
	}
	var rtts []time.Duration
	for line := range strings.Lines(out) {
		_, after, ok := strings.Cut(line, " time=")
		if !ok {
			continue
		}
		ms, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(after), " ms"), 64)
		if err != nil {
			t.Fatalf("in %s: ping %s: cannot read %q: %v", from.Name, addr, line, err)
		}
		rtts = append(rtts, time.Duration(ms*float64(time.Millisecond)))
	}
	return rtts
}
