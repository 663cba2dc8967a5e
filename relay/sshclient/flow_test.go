package sshclient_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/gateway/gatewaytest"
	"github.com/sshvpn/sshvpn/relay/sshclient"
)

// A flow's extra window lets the server send that much more before the
// client reads: the target behind the gateway is an unbuffered pipe, so
// what it manages to write is what the gateway could put on the channel.
func TestDialFlowWidensTheWindow(t *testing.T) {
	const xcrypto, extra = 2 << 20, 3 << 20
	for _, tt := range []struct {
		extra uint32
		fits  bool // 4 MiB goes out with nothing read
	}{{0, false}, {extra, true}} {
		targets := make(chan net.Conn, 1)
		g := gatewaytest.Start(t, gatewaytest.Options{Dial: func(ctx context.Context, req relay.StreamRequest) (net.Conn, error) {
			near, far := net.Pipe()
			targets <- far
			return near, nil
		}})
		sc, err := ssh.Dial("tcp", g.Addr, g.ClientConfig("SSH-2.0-sshvpn-test"))
		if err != nil {
			t.Fatal(err)
		}
		conn, err := sshclient.DialFlow(context.Background(), sc, "target.test", 80, tt.extra)
		if err != nil {
			t.Fatalf("DialFlow: %v", err)
		}
		target := <-targets
		payload := bytes.Repeat([]byte("w"), xcrypto+1<<20)
		wrote := make(chan error, 1)
		go func() {
			_, err := target.Write(payload)
			wrote <- err
		}()
		select {
		case err := <-wrote:
			if !tt.fits || err != nil {
				t.Fatalf("extra %d: the target wrote 4 MiB unread (%v); want it held at x/crypto's 2 MiB", tt.extra, err)
			}
			target.Close()
		case <-time.After(2 * time.Second):
			if tt.fits {
				t.Fatalf("extra %d: the target could not write 4 MiB before the client read: the window was not widened", tt.extra)
			}
			// Whatever was held goes through once read.
			go func() { <-wrote; target.Close() }()
		}
		got, err := io.ReadAll(conn)
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("extra %d: read %d bytes, %v; want the %d written", tt.extra, len(got), err, len(payload))
		}
		conn.Close()
		sc.Close()
	}
}
