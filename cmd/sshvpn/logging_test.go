package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/relaytest"
)

// No log line says err=<nil>, routes=[] or drops=map[].
func TestLoggerDropsEmptyAttributes(t *testing.T) {
	var buf bytes.Buffer
	log := newLogger(&buf, slog.LevelDebug, logText)
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

// --log-format json makes every line of serve's log one JSON object, the
// empty attributes dropped as in text; text stays the default.
func TestLogFormatJSON(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(keys, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr relaytest.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--listen", "127.0.0.1:0", "--host-key", filepath.Join(dir, "host_key"),
			"--authorized-keys", keys, "--resolv-conf", "/dev/null", "--log-format", "json"}, io.Discard, &stderr)
	}()
	waitOutput(t, &stderr, "listening")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v\n%s", err, stderr.String())
	}
	lines := 0
	for line := range strings.Lines(stderr.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a JSON object: %v: %s", err, line)
		}
		if m["msg"] == nil || m["level"] == nil || m["time"] == nil {
			t.Errorf("no time, level or msg: %s", line)
		}
		for k, v := range m {
			if v == nil {
				t.Errorf("%s is null: %s", k, line)
			}
		}
		lines++
	}
	if lines < 2 {
		t.Errorf("%d log lines:\n%s", lines, stderr.String())
	}

	c, err := parseServe(nil, io.Discard)
	if err != nil || c.logFormat.String() != "text" {
		t.Errorf("default --log-format %q, %v; want text", c.logFormat.String(), err)
	}
	for _, args := range [][]string{{"serve", "--log-format", "xml"}, {"connect", "--log-format", "xml", "gw"}, {"cleanup", "--log-format", "xml"}} {
		err := run(context.Background(), args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), `unknown log format "xml" (want text or json)`) {
			t.Errorf("%q: %v", args, err)
		}
	}
}
