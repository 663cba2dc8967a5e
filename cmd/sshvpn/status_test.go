package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/status"
)

func TestParseStatus(t *testing.T) {
	for _, tt := range []struct {
		args  []string
		watch time.Duration
		dump  bool
		bad   bool
	}{
		{args: nil},
		{args: []string{"--watch"}, watch: time.Second},
		{args: []string{"--watch", "2s"}, watch: 2 * time.Second},
		{args: []string{"--watch=500ms", "dump"}, watch: 500 * time.Millisecond, dump: true},
		{args: []string{"dump", "--watch"}, watch: time.Second, dump: true},
		{args: []string{"dump", "--json"}, bad: true},
		{args: []string{"--watch=1ms"}, bad: true},
		{args: []string{"show"}, bad: true},
	} {
		c, err := parseStatus(tt.args, &bytes.Buffer{})
		if tt.bad {
			if err == nil {
				t.Errorf("%q accepted", tt.args)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.args, err)
			continue
		}
		if c.watch.every != tt.watch || c.dump != tt.dump {
			t.Errorf("%q: watch %v dump %v, want %v %v", tt.args, c.watch.every, c.dump, tt.watch, tt.dump)
		}
	}
}

// TestStatusNoProcess: with nothing running, status fails and says so.
func TestStatusNoProcess(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"status", "--state-dir", t.TempDir()}, &out, &out)
	if !errors.Is(err, status.ErrNoProcess) || exitCode(err) != 1 {
		t.Errorf("err %v (exit %d), want ErrNoProcess and exit 1", err, exitCode(err))
	}
}

// --watch asks again every interval and prints each answer, until
// interrupted: the second report shows what changed since the first.
func TestStatusWatch(t *testing.T) {
	dir := t.TempDir()
	var asked atomic.Int64
	srv, err := status.Listen(dir, "serve", func() status.Report {
		n := asked.Add(1)
		return status.Report{Role: "gateway", Gateway: &status.Gateway{Listen: "198.18.0.1:2222", Backend: "netstack",
			Handshaking: int(n), Connections: []status.Connection{}}}
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 1100*time.Millisecond)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, []string{"status", "--state-dir", dir, "--watch", "200ms", "dump"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	var seen []string
	for line := range strings.Lines(out.String()) {
		if f := strings.Split(strings.TrimSpace(line), "\t"); f[0] == "gateway" && len(f) > 5 {
			seen = append(seen, f[5]) // handshaking: the report's number
		}
	}
	if len(seen) < 3 || seen[0] == seen[len(seen)-1] {
		t.Errorf("--watch 200ms for 1.1 s printed reports %v, want several, each asked anew:\n%s", seen, out.String())
	}
}
