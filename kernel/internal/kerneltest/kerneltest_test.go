//go:build linux

package kerneltest

import (
	"strings"
	"testing"
)

func TestInNewNSIsolates(t *testing.T) {
	RequireTool(t, "ip")
	InNewNS(t, func() {
		links := Run(t, "ip", "-o", "link")
		if strings.Count(links, "\n") != 1 || !strings.Contains(links, "lo:") {
			t.Fatalf("child process is not in the fresh namespace; ip link:\n%s", links)
		}
	})
}
