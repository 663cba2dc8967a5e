//go:build integration

package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// iperfJSON is the part of `iperf3 -J` output the harness reads.
type iperfJSON struct {
	Error string `json:"error"`
	End   struct {
		SumSent struct {
			Retransmits int64 `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			Bytes         int64   `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
}

// testArgs are iperf3's flags for a test ID.
func testArgs(id string) (reverse bool, streams int) {
	switch id {
	case Up1:
		return false, 1
	case Up4:
		return false, 4
	case Down1:
		return true, 1
	case Down4:
		return true, 4
	}
	panic("unknown test " + id)
}

// runIperf runs one iperf3 TCP test from the client host through the path
// and samples the CPU of the tunnel's processes on both sides over the
// measured part (after -O's omitted seconds). With loaded, it pings the
// LAN host meanwhile, from half a second into the measured part until half
// a second before its end, and returns those replies too.
func runIperf(p *path, pr profileSpec, test string, loaded bool) (TputSample, *PingSample) {
	reverse, streams := testArgs(test)
	args := []string{"iperf3", "-c", p.target, "-p", p.port, "-t", strconv.Itoa(pr.secs), "-J",
		"--connect-timeout", "5000"}
	if pr.omit > 0 {
		args = append(args, "-O", strconv.Itoa(pr.omit))
	}
	if streams > 1 {
		args = append(args, "-P", strconv.Itoa(streams))
	}
	if reverse {
		args = append(args, "-R")
	}
	s := TputSample{Test: test}
	total := time.Duration(pr.secs+pr.omit) * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), total+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", p.client.Name}, args...)...)
	var before cpuSnap
	var wg sync.WaitGroup
	start := time.Now()
	wg.Add(1)
	go func() {
		defer wg.Done()
		time.Sleep(time.Duration(pr.omit) * time.Second)
		before = p.cpu()
	}()
	var ping *PingSample
	ended := make(chan struct{}) // iperf3 returned
	pingCtx, stopPing := context.WithCancel(context.Background())
	defer stopPing()
	if loaded {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-time.After(time.Duration(pr.omit)*time.Second + 500*time.Millisecond):
			case <-ended:
				return
			}
			// Until half a second before the end, if ping keeps pace;
			// stopped 2.5 s after iperf3 ends in any case.
			n := max(10, (pr.secs-1)*100)
			if ps, err := pingRun(pingCtx, p.client, p.pingTarget, n, false); err == nil {
				ping = &ps
			}
		}()
	}
	out, err := cmd.Output()
	after := p.cpu()
	close(ended)
	// Replies still queued behind the download come back within ping's
	// own 2 s wait: let it collect them rather than count them lost.
	waitPing := time.AfterFunc(2500*time.Millisecond, stopPing)
	wg.Wait()
	waitPing.Stop()
	var j iperfJSON
	jerr := json.Unmarshal(out, &j)
	switch {
	case j.Error != "":
		s.Error = "iperf3: " + j.Error
	case err != nil:
		s.Error = fmt.Sprintf("iperf3 %s after %v: %v", strings.Join(args[1:], " "), time.Since(start).Round(time.Millisecond), err)
	case jerr != nil:
		s.Error = fmt.Sprintf("iperf3 -J output: %v", jerr)
	}
	if s.Error != "" {
		return s, ping
	}
	s.Mbps = j.End.SumReceived.BitsPerSecond / 1e6
	s.Bytes = j.End.SumReceived.Bytes
	s.Retrans = j.End.SumSent.Retransmits
	s.ClientCPU = after.client.since(before.client)
	s.GatewayCPU = after.gw.since(before.gw)
	return s, ping
}

var replyRE = regexp.MustCompile(`icmp_seq=(\d+) .*time=([\d.]+) ms`)
var sentRE = regexp.MustCompile(`(\d+) packets transmitted`)

// pingRun sends n echo requests 10 ms apart from ns to addr with ping(8)
// and parses every reply line (a summary's average hides the tail we
// want). Late replies count if they come within ping's 2 s wait. When ctx
// ends first, ping gets SIGINT, which makes it print its summary and exit.
// skipFirst leaves the first echo out: after a quiet spell it may wait for
// ARP on a 40 ms link, which is no property of the tunnel.
func pingRun(ctx context.Context, ns *nstest.NS, addr string, n int, skipFirst bool) (PingSample, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(n)*20*time.Millisecond+10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns.Name,
		"ping", "-n", "-i", "0.01", "-c", strconv.Itoa(n), "-W", "2", addr)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 5 * time.Second
	out, _ := cmd.CombinedOutput()
	s := PingSample{}
	m := sentRE.FindSubmatch(out)
	if m == nil {
		return s, fmt.Errorf("ping %s: no summary: %s", addr, tail(string(out), 5))
	}
	s.Sent, _ = strconv.Atoi(string(m[1]))
	seen := map[string]bool{}
	if skipFirst {
		seen["1"] = true
		s.Sent--
	}
	for _, l := range strings.Split(string(out), "\n") {
		r := replyRE.FindStringSubmatch(l)
		if r == nil || strings.Contains(l, "DUP!") || seen[r[1]] {
			continue
		}
		seen[r[1]] = true
		v, _ := strconv.ParseFloat(r[2], 64)
		s.RTTms = append(s.RTTms, v)
	}
	return s, nil
}

// cpuSnap is the CPU seconds of every tunnel process on both sides.
type cpuSnap struct{ client, gw procCPU }

// procCPU maps PIDs to their user+system CPU seconds.
type procCPU map[int]float64

// since sums what the processes alive at both snapshots used in between.
// A process that started in between is left out: the ones that matter
// (the tunnel's) run from before the test.
func (a procCPU) since(b procCPU) float64 {
	var d float64
	for pid, v := range a {
		if w, ok := b[pid]; ok && v >= w {
			d += v - w
		}
	}
	return d
}

// measured reports whether a process named comm is part of a tunnel: the
// benchmark's own load generators, and socksfwd, which lets iperf3 reach
// a SOCKS proxy, are not.
func measured(comm string) bool {
	switch comm {
	case "iperf3", "ping", "ip", "socksfwd":
		return false
	}
	return true
}

// nsPids lists the processes in ns, by PID (ip netns pids).
func nsPids(ns *nstest.NS) []int {
	out, err := exec.Command("ip", "netns", "pids", ns.Name).Output()
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// clkTck is USER_HZ, the unit of /proc/PID/stat's times; 100 on every Linux
// architecture Go supports.
const clkTck = 100

// nsCPU returns the CPU seconds of ns's tunnel processes. /proc/PID/stat
// sums every thread of the process. Kernel work done in softirq context
// (TCP, veth, tun) lands on whichever task is running, so these figures
// are the processes' own cost plus some of the kernel's; "raw" has none.
func nsCPU(ns *nstest.NS) procCPU {
	m := procCPU{}
	for _, pid := range nsPids(ns) {
		comm, fs, ok := procStat(pid)
		if !ok || !measured(comm) || len(fs) < 13 {
			continue
		}
		// After "(comm) ": state ppid pgrp session tty_nr tpgid flags
		// minflt cminflt majflt cmajflt utime stime.
		ut, _ := strconv.ParseFloat(fs[11], 64)
		st, _ := strconv.ParseFloat(fs[12], 64)
		m[pid] = (ut + st) / clkTck
	}
	return m
}

// procStat returns a process's comm and the fields after it.
func procStat(pid int) (string, []string, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", nil, false
	}
	s := string(b)
	open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || close < open {
		return "", nil, false
	}
	return s[open+1 : close], strings.Fields(s[close+1:]), true
}

// nsPeakRSS sums VmHWM over ns's tunnel processes, in bytes.
func nsPeakRSS(ns *nstest.NS) int64 {
	var sum int64
	for _, pid := range nsPids(ns) {
		comm, _, ok := procStat(pid)
		if !ok || !measured(comm) {
			continue
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(st), "\n") {
			if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				sum += kb << 10
			}
		}
	}
	return sum
}

// timeToFirstPacket starts a client with start and measures the time from
// just before its exec to the first echo reply from dst through the new
// tunnel: an echo request every 20 ms from a raw ICMP socket opened inside
// ns (a socket keeps the namespace it was made in, whatever thread uses
// it). Sends fail with "network unreachable" until the client installs
// its route; those are expected. alive fails early when the client died.
func timeToFirstPacket(tb testing.TB, ns *nstest.NS, dst string, timeout time.Duration, start func(), alive func() error) (time.Duration, error) {
	var c *icmp.PacketConn
	var err error
	ns.Do(tb, func() { c, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0") })
	if err != nil {
		return 0, fmt.Errorf("raw ICMP socket in %s: %w", ns.Name, err)
	}
	defer c.Close()
	to := &net.IPAddr{IP: net.ParseIP(dst)}
	id := os.Getpid() & 0xffff
	buf := make([]byte, 1500)
	t0 := time.Now()
	start()
	for seq := 1; time.Since(t0) < timeout; seq++ {
		msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("sshvpn-bench")}}
		wb, _ := msg.Marshal(nil)
		next := time.Now().Add(20 * time.Millisecond)
		c.WriteTo(wb, to) // ENETUNREACH until the route exists
		for {
			c.SetReadDeadline(next)
			n, peer, err := c.ReadFrom(buf)
			if err != nil {
				break // deadline: send the next one
			}
			if peer.String() != dst {
				continue
			}
			m, err := icmp.ParseMessage(1, buf[:n])
			if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
				continue
			}
			if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id {
				return time.Since(t0), nil
			}
		}
		if err := alive(); err != nil {
			return 0, err
		}
	}
	return 0, fmt.Errorf("no echo reply from %s within %v of starting the client", dst, timeout)
}

// errExited is a client or server that is gone.
var errExited = errors.New("exited")

// exitedErr describes a dead process with its log's tail.
func exitedErr(what string, p *nstest.Proc) error {
	return fmt.Errorf("%s %w (%v):\n%s", what, errExited, p.Wait(0), p.Tail(20))
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
