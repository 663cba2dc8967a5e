package main

import (
	"bytes"
	"context"
	"errors"
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
