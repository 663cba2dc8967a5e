package sshchan

import (
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// TestDisconnectReachesPeer is the guard for Disconnect (xcrypto.go): the server must
// see SSH_MSG_DISCONNECT with the reason and message sent, as sshd logs
// "Received disconnect ... 11: disconnected by user" for ssh. It fails when
// x/crypto/ssh changes the internals Disconnect reaches: Disconnect then
// only closes and the server sees EOF.
func TestDisconnectReachesPeer(t *testing.T) {
	cfg := openServerConfig(t)
	a, b := tcpPair(t)
	waited := make(chan error, 1)
	go func() {
		sc, chans, reqs, err := ssh.NewServerConn(b, cfg)
		if err != nil {
			waited <- err
			return
		}
		go ssh.DiscardRequests(reqs)
		go func() {
			for nc := range chans {
				nc.Reject(ssh.Prohibited, "no")
			}
		}()
		waited <- sc.Wait()
	}()
	c, chans, reqs, err := ssh.NewClientConn(a, "pipe", &ssh.ClientConfig{HostKeyCallback: ssh.InsecureIgnoreHostKey()})
	if err != nil {
		t.Fatal(err)
	}
	client := ssh.NewClient(c, chans, reqs)
	if _, err := transportOf(client); err != nil {
		t.Fatalf("x/crypto/ssh changed: update xcrypto.go: %v", err)
	}
	if err := Disconnect(client, DisconnectByApplication, "disconnected by user"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-waited:
		if err == nil || !strings.Contains(err.Error(), `reason 11: "disconnected by user"`) {
			t.Fatalf("server saw %v, want the disconnect", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("server never saw the connection end")
	}
	// The connection is closed: a second Disconnect fails without harm.
	if err := Disconnect(client, DisconnectByApplication, "again"); err == nil {
		t.Error("disconnect on a closed connection reported success")
	}
}

// The x/crypto that go.mod requires is the one Disconnect's linkname was
// read against: an upgrade must read writePacket again.
func TestAuditedXCrypto(t *testing.T) {
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if want := "golang.org/x/crypto " + auditedXCrypto; !strings.Contains(string(mod), want) {
		t.Fatalf("go.mod does not require %s: read (*handshakeTransport).writePacket in the new x/crypto, then update auditedXCrypto", want)
	}
}
