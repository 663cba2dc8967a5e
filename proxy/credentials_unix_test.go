//go:build unix

package proxy

import (
	"os"
	"strings"
	"testing"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// TestLoadCredentialsOwner: like ssh with a key, a file that another user
// owns (and so may rewrite) is refused, one of our own or root's is read.
func TestLoadCredentialsOwner(t *testing.T) {
	nstest.RequireRoot(t) // to give a file away
	p := writeCreds(t, "alice:x\n", 0o600)
	if _, err := LoadCredentials(p); err != nil {
		t.Fatalf("our own file: %v", err)
	}
	if err := os.Chown(p, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, err := LoadCredentials(p)
	if err == nil || !strings.Contains(err.Error(), "belongs to uid 65534") || !strings.Contains(err.Error(), "chown") {
		t.Fatalf("a file of uid 65534: err %v, want 'belongs to uid 65534 … chown'", err)
	}
}
