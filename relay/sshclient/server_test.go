package sshclient

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// testServer is an in-process x/crypto/ssh server on 127.0.0.1 that
// accepts the public keys in authorized, answers every global request with
// false (as sshd answers keepalive@openssh.com) and, when forward is set,
// serves direct-tcpip channels like a ProxyJump host.
type testServer struct {
	t          *testing.T
	ln         net.Listener
	hostSigner ssh.Signer
	authorized map[string]bool
	forward    bool

	mu    sync.Mutex
	conns []net.Conn
	users []string
	wg    sync.WaitGroup
}

func newSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func startServer(t *testing.T, forward bool, authorized ...ssh.PublicKey) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{t: t, ln: ln, hostSigner: newSigner(t), authorized: map[string]bool{}, forward: forward}
	for _, k := range authorized {
		s.authorized[string(k.Marshal())] = true
	}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.close)
	return s
}

func (s *testServer) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

func (s *testServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *testServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		s.wg.Add(1)
		go s.handle(c)
	}
}

func (s *testServer) handle(c net.Conn) {
	defer s.wg.Done()
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(m ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if s.authorized[string(k.Marshal())] {
				return nil, nil
			}
			return nil, errUnauthorized
		},
	}
	cfg.AddHostKey(s.hostSigner)
	conn, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		c.Close()
		return
	}
	s.mu.Lock()
	s.users = append(s.users, conn.User()+" "+string(conn.ClientVersion()))
	s.mu.Unlock()
	go ssh.DiscardRequests(reqs) // replies false to want-reply requests
	for nc := range chans {
		if nc.ChannelType() != "direct-tcpip" || !s.forward {
			nc.Reject(ssh.Prohibited, "test server: only direct-tcpip")
			continue
		}
		s.wg.Add(1)
		go s.directTCPIP(nc)
	}
	conn.Close()
}

// directTCPIP is RFC 4254 §7.2 with a plain net.Dial.
func (s *testServer) directTCPIP(nc ssh.NewChannel) {
	defer s.wg.Done()
	var p struct {
		Host       string
		Port       uint32
		OrigHost   string
		OriginPort uint32
	}
	if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil {
		nc.Reject(ssh.ConnectionFailed, "bad payload")
		return
	}
	out, err := net.Dial("tcp", net.JoinHostPort(p.Host, strconv.Itoa(int(p.Port))))
	if err != nil {
		nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		out.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	done := make(chan struct{})
	go func() {
		io.Copy(out, ch)
		out.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	io.Copy(ch, out)
	ch.CloseWrite()
	<-done
	ch.Close()
	out.Close()
}

var errUnauthorized = errors.New("test server: key not authorized")

// wantLoggedIn waits briefly for the server side of the handshake to
// finish (it can trail the client's), then checks "user version" per
// authenticated connection.
func (s *testServer) wantLoggedIn(t *testing.T, want ...string) {
	t.Helper()
	var got []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		s.mu.Lock()
		got = append([]string(nil), s.users...)
		s.mu.Unlock()
		if len(got) >= len(want) {
			break
		}
	}
	eq(t, "logins", got, want)
}
