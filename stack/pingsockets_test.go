package stack

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sshvpn/sshvpn/relay/relaytest"
)

// Ping sockets the host did not allow at start are looked for again at an
// echo once pingRecheck has passed, not at every echo, and the gateway
// says when they come.
func TestPingSocketsLookAgain(t *testing.T) {
	var allowed atomic.Bool
	var probes atomic.Int32
	var log relaytest.Buffer
	p := newPingSockets(func(bool) bool {
		probes.Add(1)
		return allowed.Load()
	}, slog.New(slog.NewTextHandler(&log, nil)))
	if w := fmt.Sprintf("group %d", os.Getegid()); !strings.Contains(log.String(), w) {
		t.Errorf("the warning does not name %q:\n%s", w, log.String())
	}
	allowed.Store(true)
	for range 100 {
		if p.available(false) {
			t.Fatal("looked again before pingRecheck passed")
		}
	}
	if n := probes.Load(); n != 2 {
		t.Errorf("%d looks for ping sockets, want 2 (one per family at start)", n)
	}
	p.next[0].Store(0) // pingRecheck has passed
	if !p.available(false) {
		t.Fatal("ping sockets allowed later are not noticed")
	}
	if !strings.Contains(log.String(), "ping sockets are allowed now") {
		t.Errorf("no word that pings are forwarded now:\n%s", log.String())
	}
	if !p.available(false) || probes.Load() != 3 {
		t.Errorf("looked again (%d looks) once they were found", probes.Load())
	}
}

// The warning gives the sysctl line for the process's group: the range in
// force widened to take it, or the group alone.
func TestPingAdvice(t *testing.T) {
	for _, tc := range []struct{ now, want string }{
		{"1 0", `ping_group_range="65534 65534" (now "1 0")`},
		{"", `ping_group_range="65534 65534";`},
		{"0 100", `ping_group_range="0 65534" (now "0 100"), which also allows every group between; or "65534 65534" for this group alone`},
		{"70000 80000", `ping_group_range="65534 80000"`},
	} {
		got := pingAdvice(65534, tc.now)
		if !strings.Contains(got, "sysctl -w net.ipv4."+tc.want) || !strings.Contains(got, "group 65534") {
			t.Errorf("range %q: %s\nwant %s", tc.now, got, tc.want)
		}
	}
}
