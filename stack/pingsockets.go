package stack

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// pingRecheck is how soon an echo may look again for ping sockets after a
// look found none: a widened net.ipv4.ping_group_range takes effect at the
// next ping, without a restart, and a client pinging meanwhile costs one
// socket(2) per interval, not one per echo.
const pingRecheck = 2 * time.Second

// pingSockets says whether this process may open unprivileged ping sockets
// of each family. Without them the gateway answers no echo (it never fakes
// a reply); the answer is looked for again, lazily, while it is no.
type pingSockets struct {
	probe func(v6 bool) bool // PingAvailable; tests stand in
	log   *slog.Logger
	ok    [2]atomic.Bool  // by family: IPv4, IPv6
	next  [2]atomic.Int64 // Unix nanoseconds: when a family with no sockets is looked at again
}

// newPingSockets looks for ping sockets of both families and warns, with
// the sysctl that allows them, when there are none for IPv4 (the sysctl
// covers both; IPv6 may simply be off).
func newPingSockets(probe func(v6 bool) bool, log *slog.Logger) *pingSockets {
	p := &pingSockets{probe: probe, log: log}
	for i, v6 := range []bool{false, true} {
		p.ok[i].Store(probe(v6))
		p.next[i].Store(time.Now().Add(pingRecheck).UnixNano())
	}
	if !p.ok[0].Load() {
		log.Warn(pingAdvice(os.Getegid(), readPingRange()))
	}
	return p
}

// available reports whether echoes of the family can be forwarded. When
// they could not, it looks again at most once per pingRecheck. It runs on
// a client's inbound path: it never blocks.
func (p *pingSockets) available(v6 bool) bool {
	if p == nil {
		return false
	}
	i := 0
	if v6 {
		i = 1
	}
	if p.ok[i].Load() {
		return true
	}
	now := time.Now().UnixNano()
	next := p.next[i].Load()
	if now < next || !p.next[i].CompareAndSwap(next, now+int64(pingRecheck)) {
		return false
	}
	if !p.probe(v6) {
		return false
	}
	if !p.ok[i].Swap(true) {
		p.log.Info("ping sockets are allowed now: clients' pings are forwarded", "ipv6", v6)
	}
	return true
}

// readPingRange is net.ipv4.ping_group_range as the kernel shows it ("1 0"
// allows nobody, Debian's default), or "" when it cannot be read.
func readPingRange() string {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ping_group_range")
	if err != nil {
		return ""
	}
	return strings.Join(strings.Fields(string(b)), " ")
}

// pingAdvice is the warning for a process of group gid that may open no
// ping sockets, with the sysctl line that lets it: the range now in force
// widened to take gid, or gid alone when the range is empty or unknown.
func pingAdvice(gid int, now string) string {
	lo, hi := gid, gid
	var a, b int
	if _, err := fmt.Sscan(now, &a, &b); err == nil && a <= b {
		lo, hi = min(a, gid), max(b, gid)
	}
	msg := fmt.Sprintf("no unprivileged ping sockets for this process's group %d: clients' pings get no replies. "+
		"Allow them, for this network namespace, with: sysctl -w net.ipv4.ping_group_range=\"%d %d\"", gid, lo, hi)
	if now != "" {
		msg += fmt.Sprintf(" (now %q)", now)
	}
	if lo != gid || hi != gid {
		// Widened to keep the groups allowed now, it allows those between.
		msg += fmt.Sprintf(", which also allows every group between; or \"%d %d\" for this group alone", gid, gid)
	}
	return msg + "; the gateway notices at the next ping, without a restart"
}
