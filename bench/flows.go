package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// The sweep's measurement: one iperf3 run of N parallel TCP flows read
// per flow, so that one starved or stalled flow is not hidden by the
// others' sum. iperf3 (3.12 here) allows -P up to 128 and -i down to
// 0.1 s; its per-interval samples are the client's, which are what the
// receiver got only when the client receives (-R, a download). A
// sender's samples would count bytes written into its socket buffer,
// which a stalled flow keeps accepting until the buffer is full.

// FlowSample is one iperf3 run of Flows parallel streams, reduced to the
// sweep's figures, with each stream's own.
type FlowSample struct {
	Flows int `json:"flows"`
	// AggMbps is end.sum_received.bits_per_second / 1e6.
	AggMbps float64 `json:"aggregate_mbps"`
	Bytes   int64   `json:"bytes"`
	// SlowestMbps is the least of end.streams[].receiver.bits_per_second.
	SlowestMbps float64 `json:"slowest_mbps"`
	// StallSecs is the longest run of consecutive measured intervals in
	// which one stream received nothing, in seconds, over every stream;
	// its resolution is IntervalSecs.
	StallSecs    float64 `json:"longest_stall_seconds"`
	IntervalSecs float64 `json:"interval_seconds"`
	Retrans      int64   `json:"retransmits"`
	// StreamMbps and StreamStallSecs are each stream's, in the order of
	// iperf3's end.streams.
	StreamMbps      []float64 `json:"stream_mbps,omitempty"`
	StreamStallSecs []float64 `json:"stream_stall_seconds,omitempty"`
	// WallSecs is the whole iperf3 run, connecting every stream included.
	WallSecs float64 `json:"wall_seconds"`
	Error    string  `json:"error,omitempty"`
}

// iperfFlowsJSON is the part of `iperf3 -J -P N -i I` output ParseFlows reads.
type iperfFlowsJSON struct {
	Error string `json:"error"`
	Start struct {
		TestStart struct {
			NumStreams int `json:"num_streams"`
			Reverse    int `json:"reverse"`
		} `json:"test_start"`
	} `json:"start"`
	Intervals []struct {
		Streams []iperfInterval `json:"streams"`
	} `json:"intervals"`
	End struct {
		Streams []struct {
			Receiver struct {
				Socket        int     `json:"socket"`
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"receiver"`
		} `json:"streams"`
		SumSent struct {
			Retransmits int64 `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			Bytes         int64   `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
}

// iperfInterval is one stream's share of one reporting interval.
type iperfInterval struct {
	Socket  int     `json:"socket"`
	Seconds float64 `json:"seconds"`
	Bytes   int64   `json:"bytes"`
	Omitted bool    `json:"omitted"`
}

// errSenderIntervals is a run whose per-interval samples are the
// sender's, from which no stall can be told (see the top of this file).
var errSenderIntervals = errors.New("iperf3's intervals are the sender's here: per-flow stalls need the client to receive (-R)")

// ParseFlows reduces the JSON of `iperf3 -c … -R -P N -i I -J` to a
// FlowSample. Intervals iperf3 marks omitted (-O) count for nothing, as
// they do for its own totals.
func ParseFlows(js []byte) (FlowSample, error) {
	var j iperfFlowsJSON
	if err := json.Unmarshal(js, &j); err != nil {
		return FlowSample{}, fmt.Errorf("iperf3 -J output: %w", err)
	}
	if j.Error != "" {
		return FlowSample{}, fmt.Errorf("iperf3: %s", j.Error)
	}
	if j.Start.TestStart.Reverse == 0 {
		return FlowSample{}, errSenderIntervals
	}
	n := len(j.End.Streams)
	if n == 0 || n != j.Start.TestStart.NumStreams {
		return FlowSample{}, fmt.Errorf("iperf3 reports %d streams of the %d it started", n, j.Start.TestStart.NumStreams)
	}
	s := FlowSample{Flows: n, AggMbps: j.End.SumReceived.BitsPerSecond / 1e6, Bytes: j.End.SumReceived.Bytes,
		Retrans: j.End.SumSent.Retransmits, StreamMbps: make([]float64, n), StreamStallSecs: make([]float64, n)}
	index := make(map[int]int, n) // socket → stream
	for i, st := range j.End.Streams {
		index[st.Receiver.Socket] = i
		s.StreamMbps[i] = st.Receiver.BitsPerSecond / 1e6
	}
	series := make([][]iperfInterval, n)
	for _, iv := range j.Intervals {
		for _, x := range iv.Streams {
			if i, ok := index[x.Socket]; ok && !x.Omitted {
				series[i] = append(series[i], x)
				s.IntervalSecs = max(s.IntervalSecs, x.Seconds)
			}
		}
	}
	for i := range n {
		s.StreamStallSecs[i] = longestStall(series[i])
	}
	s.SlowestMbps, s.StallSecs = slices.Min(s.StreamMbps), slices.Max(s.StreamStallSecs)
	return s, nil
}

// longestStall is the longest run of consecutive intervals in which the
// stream moved no byte, in seconds (the intervals' own lengths: iperf3's
// last one is often short).
func longestStall(ivs []iperfInterval) float64 {
	var run, longest float64
	for _, x := range ivs {
		if x.Bytes > 0 {
			run = 0
			continue
		}
		run += x.Seconds
		longest = max(longest, run)
	}
	return longest
}
