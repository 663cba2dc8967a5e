package kernel

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/sshvpn/sshvpn/relay"
)

// A forward to the gateway's loopback is refused, by address or by name,
// even with something listening there: what listens on 127.0.0.1 or ::1
// is the host's alone.
func TestDialStreamRefusesLoopback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := netip.MustParseAddrPort(ln.Addr().String()).Port()
	for _, host := range []string{"127.0.0.1", "localhost", "::1", "0.0.0.0"} {
		c, err := (&Gateway{}).DialStream(context.Background(), relay.StreamRequest{Host: host, Port: port})
		if err == nil {
			c.Close()
			t.Errorf("%s: forwarded to the gateway's loopback", host)
			continue
		}
		if !errors.Is(err, errLoopback) {
			t.Errorf("%s: %v, want the loopback refused", host, err)
		}
	}
}
