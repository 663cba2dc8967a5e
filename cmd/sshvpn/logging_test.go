package main

import (
	"bytes"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/sshvpn/sshvpn/relay"
)

// No log line says err=<nil>, routes=[] or drops=map[].
func TestLoggerDropsEmptyAttributes(t *testing.T) {
	var buf bytes.Buffer
	log := newLogger(&buf, slog.LevelDebug)
	var noErr error
	var none []netip.Prefix
	var c relay.Counters
	log.With("addresses", none).Info("local device configured", "err", noErr, "routes", []netip.Prefix{},
		"drops", map[string]int{}, "in", c.Snapshot(), "kept", []int{1}, "why", errors.New("gone"))
	got := buf.String()
	for _, bad := range []string{"<nil>", "[]", "map[", "addresses", "routes", "drops="} {
		if strings.Contains(got, bad) {
			t.Errorf("log line shows %q: %s", bad, got)
		}
	}
	for _, want := range []string{"kept=[1]", "why=gone", "in.packets=0"} {
		if !strings.Contains(got, want) {
			t.Errorf("log line lost %q: %s", want, got)
		}
	}
}
