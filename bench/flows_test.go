package bench

import (
	"errors"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
)

// flowsJSON is iperf3 -R -P 2 -i 0.1 -O 1 output cut to what ParseFlows
// reads: socket 5 stalls for 0.2 s in the middle, socket 7 for the last
// 0.35 s, and socket 7 moved nothing in the 0.4 s that -O omitted, which
// must not count.
const flowsJSON = `{
 "start": {"test_start": {"num_streams": 2, "reverse": 1}},
 "intervals": [
  {"streams": [{"socket": 5, "seconds": 0.1, "bytes": 0, "omitted": true}, {"socket": 7, "seconds": 0.1, "bytes": 0, "omitted": true}]},
  {"streams": [{"socket": 5, "seconds": 0.1, "bytes": 100, "omitted": true}, {"socket": 7, "seconds": 0.1, "bytes": 0, "omitted": true}]},
  {"streams": [{"socket": 5, "seconds": 0.1, "bytes": 100, "omitted": true}, {"socket": 7, "seconds": 0.1, "bytes": 0, "omitted": true}]},
  {"streams": [{"socket": 5, "seconds": 0.1, "bytes": 100, "omitted": true}, {"socket": 7, "seconds": 0.1, "bytes": 0, "omitted": true}]},
  {"streams": [{"socket": 5, "seconds": 0.1, "bytes": 100}, {"socket": 7, "seconds": 0.1, "bytes": 100}]},
  {"streams": [{"socket": 5, "seconds": 0.1, "bytes": 0}, {"socket": 7, "seconds": 0.1, "bytes": 0}]},
  {"streams": [{"socket": 5, "seconds": 0.1, "bytes": 0}, {"socket": 7, "seconds": 0.1, "bytes": 0}]},
  {"streams": [{"socket": 5, "seconds": 0.1, "bytes": 100}, {"socket": 7, "seconds": 0.1, "bytes": 0}]},
  {"streams": [{"socket": 5, "seconds": 0.05, "bytes": 0}, {"socket": 7, "seconds": 0.05, "bytes": 0}]}
 ],
 "end": {
  "streams": [{"receiver": {"socket": 5, "bits_per_second": 8e6}}, {"receiver": {"socket": 7, "bits_per_second": 4e6}}],
  "sum_sent": {"retransmits": 3},
  "sum_received": {"bytes": 400, "bits_per_second": 12e6}
 }
}`

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestParseFlows(t *testing.T) {
	s, err := ParseFlows([]byte(flowsJSON))
	if err != nil {
		t.Fatal(err)
	}
	if s.Flows != 2 || s.AggMbps != 12 || s.Bytes != 400 || s.Retrans != 3 {
		t.Errorf("flows %d, aggregate %v Mbit/s, %d bytes, %d retransmits; want 2, 12, 400, 3", s.Flows, s.AggMbps, s.Bytes, s.Retrans)
	}
	if !slices.Equal(s.StreamMbps, []float64{8, 4}) || s.SlowestMbps != 4 {
		t.Errorf("streams %v Mbit/s, slowest %v; want [8 4], 4", s.StreamMbps, s.SlowestMbps)
	}
	// Socket 5: 0.2 s in the middle (a byte after it ends the run, and
	// its last 0.05 s is shorter). Socket 7: the last 0.35 s, a stall
	// still going at the end; its omitted 0.4 s before are not counted.
	if len(s.StreamStallSecs) != 2 || !near(s.StreamStallSecs[0], 0.2) || !near(s.StreamStallSecs[1], 0.35) || !near(s.StallSecs, 0.35) {
		t.Errorf("stalls %v, longest %v; want [0.2 0.35], 0.35", s.StreamStallSecs, s.StallSecs)
	}
	if s.IntervalSecs != 0.1 {
		t.Errorf("interval %v s, want 0.1", s.IntervalSecs)
	}
}

func TestParseFlowsRefuses(t *testing.T) {
	for _, c := range []struct {
		name, js, want string
	}{
		{"sender's intervals", strings.Replace(flowsJSON, `"reverse": 1`, `"reverse": 0`, 1), errSenderIntervals.Error()},
		{"iperf3's error", `{"error": "unable to connect to server: Connection refused"}`, "iperf3: unable to connect"},
		{"a stream missing", strings.Replace(flowsJSON, `"num_streams": 2`, `"num_streams": 3`, 1), "2 streams of the 3"},
		{"no JSON", `iperf3: error`, "iperf3 -J output"},
	} {
		_, err := ParseFlows([]byte(c.js))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
	if _, err := ParseFlows([]byte(strings.Replace(flowsJSON, `"reverse": 1`, `"reverse": 0`, 1))); !errors.Is(err, errSenderIntervals) {
		t.Errorf("an upload's JSON: %v, want errSenderIntervals", err)
	}
}

// TestParseFlowsRecorded reads a real run (recorded by hand, see
// testdata/README.md): iperf3 3.12, -R -P 4 -t 2 -i 0.1 over loopback,
// its server (the sender) stopped with SIGSTOP for half a second after
// the first second.
func TestParseFlowsRecorded(t *testing.T) {
	js, err := os.ReadFile("testdata/iperf3-R-P4-stopped.json")
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseFlows(js)
	if err != nil {
		t.Fatal(err)
	}
	if s.Flows != 4 || !near(math.Round(s.IntervalSecs*100)/100, 0.1) {
		t.Errorf("%d flows at %v s intervals; want 4 at 0.1", s.Flows, s.IntervalSecs)
	}
	var sum float64
	for i, x := range s.StreamMbps {
		sum += x
		// The kernel keeps sending what the stopped server had queued
		// for a few milliseconds: most of the half second is empty.
		if st := s.StreamStallSecs[i]; st < 0.3 || st > 0.7 {
			t.Errorf("stream %d stalled for %v s; want about 0.4–0.5", i, st)
		}
	}
	if math.Abs(sum-s.AggMbps) > 0.01*s.AggMbps {
		t.Errorf("streams sum to %v Mbit/s, aggregate %v", sum, s.AggMbps)
	}
	if s.SlowestMbps != slices.Min(s.StreamMbps) || s.StallSecs != slices.Max(s.StreamStallSecs) {
		t.Errorf("slowest %v of %v, longest stall %v of %v", s.SlowestMbps, s.StreamMbps, s.StallSecs, s.StreamStallSecs)
	}
}
