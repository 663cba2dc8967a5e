package wire

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/sshvpn/sshvpn/relay"
)

var update = flag.Bool("update", false, "rewrite the named fuzz seeds in testdata/fuzz")

// FuzzSplitL3 checks the point-to-point framer on arbitrary streams.
func FuzzSplitL3(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		frames := checkSplit(t, SplitL3, b, afLen+MaxFrame)
		for _, frame := range frames {
			pkt, err := DecodeL3(frame)
			if err != nil || !bytes.Equal(pkt, frame[afLen:]) {
				t.Fatalf("DecodeL3 of a split frame %x: %x, %v", frame, pkt, err)
			}
		}
	})
}

// FuzzSplitL2 checks the ethernet framer on arbitrary streams.
func FuzzSplitL2(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, frame := range checkSplit(t, SplitL2, b, MaxFrame) {
			if err := DecodeL2(frame, MaxFrame); err != nil {
				t.Fatalf("DecodeL2 of a split frame %x: %v", frame, err)
			}
		}
	})
}

// FuzzDecodeL3 checks that DecodeL3 agrees with SplitL3 and with EncodeL3.
func FuzzDecodeL3(f *testing.F) {
	f.Fuzz(func(t *testing.T, msg []byte) {
		pkt, err := DecodeL3(msg)
		checkDropOnly(t, err)
		frame, _, serr := SplitL3(msg)
		if err != nil {
			if serr == nil && len(frame) == len(msg) {
				t.Fatalf("SplitL3 frames %x that DecodeL3 refuses: %v", frame, err)
			}
			return
		}
		if serr == nil && len(frame) != len(msg) {
			t.Fatalf("DecodeL3 accepted %x with %d bytes after the frame", msg, len(msg)-len(frame))
		}
		if len(pkt) == 0 || &pkt[0] != &msg[afLen] {
			t.Fatalf("pkt %x is not msg[4:]", pkt)
		}
		if serr == nil && !bytes.Equal(frame[afLen:], pkt) {
			t.Fatalf("SplitL3 frame %x, DecodeL3 packet %x", frame, pkt)
		}
		if serr != nil && !errors.Is(serr, relay.ErrDropped) && len(pkt) <= MaxFrame {
			t.Fatalf("SplitL3: %v, DecodeL3 accepted %x", serr, pkt)
		}
		checkReencode(t, pkt)
	})
}

// checkReencode encodes pkt again and decodes the result.
func checkReencode(t *testing.T, pkt []byte) {
	buf := append(make([]byte, relay.Headroom), pkt...)
	frame, err := EncodeL3(buf, relay.Headroom, len(pkt))
	if err != nil {
		t.Fatalf("EncodeL3 of a decoded packet: %v", err)
	}
	if af := frame[afLen-1]; af != afInet && af != afInet6 {
		t.Fatalf("EncodeL3 wrote address family %d", af)
	}
	again, err := DecodeL3(frame)
	if err != nil || !bytes.Equal(again, pkt) {
		t.Fatalf("round trip: %x, %v; want %x", again, err, pkt)
	}
}

// checkSplit splits b until an error or the end, checks every step, then
// checks that the frames found split again into themselves. It returns them.
func checkSplit(t *testing.T, split splitFunc, b []byte, limit int) [][]byte {
	var frames [][]byte
	for rest := b; len(rest) > 0; {
		frame, next, err := split(rest)
		if err != nil {
			checkSplitErr(t, frame, next, rest, err, limit)
			break
		}
		checkFrame(t, frame, next, rest, limit)
		frames = append(frames, frame)
		rest = next
	}
	again, rest, err := splitAll(split, bytes.Join(frames, nil))
	if err != nil || len(rest) != 0 || len(again) != len(frames) {
		t.Fatalf("re-split of %d frames: %d frames, %d bytes left, %v", len(frames), len(again), len(rest), err)
	}
	for i := range frames {
		if !bytes.Equal(again[i], frames[i]) {
			t.Fatalf("re-split frame %d = %x, want %x", i, again[i], frames[i])
		}
	}
	return frames
}

func checkFrame(t *testing.T, frame, next, b []byte, limit int) {
	t.Helper()
	switch {
	case len(frame) == 0:
		t.Fatal("empty frame: no progress")
	case len(frame) > limit:
		t.Fatalf("frame of %d bytes, limit %d", len(frame), limit)
	case len(frame)+len(next) != len(b):
		t.Fatalf("frame %d + rest %d bytes != %d", len(frame), len(next), len(b))
	case &frame[0] != &b[0] || cap(frame) != len(frame):
		t.Fatal("frame is not a capped prefix of b")
	case len(next) > 0 && &next[0] != &b[len(frame)]:
		t.Fatal("rest does not follow frame in b")
	}
}

func checkSplitErr(t *testing.T, frame, next, b []byte, err error, limit int) {
	t.Helper()
	if frame != nil || len(next) != len(b) {
		t.Fatalf("on error %v: frame %x and %d of %d bytes left", err, frame, len(next), len(b))
	}
	if errors.Is(err, ErrShort) && len(b) >= limit {
		t.Fatalf("ErrShort for %d bytes, more than any datagram", len(b))
	}
	if !errors.Is(err, ErrShort) && !errors.Is(err, ErrUnknownLength) {
		checkDropOnly(t, err)
	}
}

func checkDropOnly(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		if _, ok := errors.AsType[*relay.DropError](err); !ok {
			t.Fatalf("err %v is not a *relay.DropError", err)
		}
	}
}

// seeds are the named, real-looking inputs of the seed corpus; crashers the
// fuzzer finds go beside them under their hash names.
func seeds() map[string]map[string][]byte {
	v4, v6 := l3(afInet, icmpEcho()), l3(afInet6, udp6("\x12\x34\x01\x00\x00\x01"))
	arp := eth(etherARP, arpRequest())
	return map[string]map[string][]byte{
		"FuzzSplitL3": {
			"ipv4-icmp-echo":       v4,
			"ipv6-udp":             v6,
			"ipv6-linux-family":    l3(afInet6Linux, udp6("x")),
			"three-concatenated":   cat(v4, v6, v4),
			"truncated-second":     cat(v6, v4[:30]),
			"ipv4-with-ipv6-af":    l3(afInet6, icmpEcho()),
			"ipv4-bad-ihl":         l3(afInet, with(icmpEcho(), 0, 0x42)),
			"ipv6-jumbogram":       l3(afInet6, with(with(udp6(""), 4, 0), 5, 0)),
			"junk-banner":          []byte("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"),
			"frame-then-junk":      cat(v4, []byte{0xde, 0xad, 0xbe, 0xef}),
			"ipv4-oversized-claim": l3(afInet, with(icmpEcho(), 2, 0xff))[:24],
		},
		"FuzzSplitL2": {
			"ipv4-icmp-echo":         eth(etherIPv4, icmpEcho()),
			"arp-unpadded":           arp,
			"arp-padded-then-ipv4":   cat(pad(arp, 60), eth(etherIPv4, icmpEcho())),
			"arp-unpadded-then-ipv6": cat(arp, eth(etherIPv6, udp6("x"))),
			"arp-padding-cut":        pad(arp, 51),
			"vlan-ipv4":              eth(etherIPv4, icmpEcho(), etherVLAN),
			"qinq-ipv6-udp":          eth(etherIPv6, udp6("hello"), etherQinQ, etherVLAN),
			"vlan-arp-padded":        pad(eth(etherARP, arpRequest(), etherVLAN), 60),
			"8023-llc-stp":           pad(eth(38, append([]byte{0x42, 0x42, 0x03}, make([]byte, 35)...)), 60),
			"lldp-unknown-type":      eth(0x88cc, make([]byte, 46)),
			"three-tags":             eth(etherIPv4, icmpEcho(), etherVLAN, etherVLAN, etherVLAN),
			"zero-destination":       make([]byte, 64),
			"junk":                   []byte("\xff\xff\xff\xff\xff\xff\x01\x02\x03\x04\x05\x06\x08\x00\x99"),
			"truncated-ipv4":         eth(etherIPv4, icmpEcho())[:40],
		},
		"FuzzDecodeL3": {
			"ipv4-icmp-echo":    v4,
			"ipv6-udp":          v6,
			"ipv6-linux-family": l3(afInet6Linux, udp6("x")),
			"trailing-bytes":    cat(v4, []byte{0, 0, 0, 0}),
			"ipv4-truncated":    v4[:40],
			"ipv6-with-ipv4-af": l3(afInet, udp6("x")),
			"af-only":           l3(afInet, nil),
			"short":             []byte{0, 0},
		},
	}
}

// TestFuzzSeeds keeps the named seed files in step with the builders above;
// go test -run TestFuzzSeeds -update ./relay/ rewrites them.
func TestFuzzSeeds(t *testing.T) {
	for fuzzer, named := range seeds() {
		for name, b := range named {
			path := filepath.Join("testdata", "fuzz", fuzzer, name)
			want := fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", b)
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, want, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("seed %s is stale or missing (%v): run go test -run TestFuzzSeeds -update ./relay/", path, err)
			}
		}
	}
}
