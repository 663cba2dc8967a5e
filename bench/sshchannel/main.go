// Command sshchannel is the benchmark's "ssh-channel" row: bulk TCP bytes
// carried through golang.org/x/crypto/ssh channels and nothing else — no tun,
// no IP packets, no framing of ours. It is the ceiling of the SSH transport
// sshvpn is built on, with the cipher sshvpn negotiates.
//
//	sshchannel server -listen ADDR
//	sshchannel client -server ADDR -listen ADDR -target HOST:PORT
//
// The server accepts any client (it runs in a namespace the benchmark made)
// and, for each direct-tcpip channel, dials the address the channel names.
// The client opens one SSH connection, listens on -listen, and carries each
// accepted TCP connection over a channel of its own to -target, so iperf3 -P 4
// is four channels (plus iperf3's control connection) on one connection. Both
// print "ready" once they can carry data.
package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strconv"

	"golang.org/x/crypto/ssh"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("sshchannel: ")
	if len(os.Args) < 2 {
		log.Fatal("usage: sshchannel server|client [flags]")
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	listen := fs.String("listen", "", "address to listen on")
	server := fs.String("server", "", "client: the sshchannel server's address")
	target := fs.String("target", "", "client: host:port the server dials for each connection")
	// One cipher on both sides, so this is the one negotiated: sshvpn's
	// gateway offers AES-GCM first and x/crypto/ssh's client prefers it.
	cipher := fs.String("cipher", "aes128-gcm@openssh.com", "the only SSH cipher offered")
	fs.Parse(os.Args[2:])
	cfg := ssh.Config{Ciphers: []string{*cipher}}
	var err error
	switch os.Args[1] {
	case "server":
		err = serve(*listen, cfg)
	case "client":
		err = client(*server, *listen, *target, cfg)
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		log.Fatal(err)
	}
}

func serve(listen string, cfg ssh.Config) error {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return err
	}
	sc := &ssh.ServerConfig{Config: cfg, NoClientAuth: true}
	sc.AddHostKey(signer)
	return acceptLoop(listen, func(c net.Conn) {
		_, chans, reqs, err := ssh.NewServerConn(c, sc)
		if err != nil {
			log.Printf("handshake: %v", err)
			return
		}
		go ssh.DiscardRequests(reqs)
		for nc := range chans {
			go forward(nc)
		}
	})
}

// acceptLoop listens, says "ready" on stdout for the harness, and handles
// each connection on a goroutine of its own.
func acceptLoop(listen string, handle func(net.Conn)) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	fmt.Println("ready")
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go handle(c)
	}
}

// forward dials the address a direct-tcpip channel names (RFC 4254 7.2)
// and joins the two.
func forward(nc ssh.NewChannel) {
	if nc.ChannelType() != "direct-tcpip" {
		nc.Reject(ssh.UnknownChannelType, "only direct-tcpip")
		return
	}
	var req struct {
		Host       string
		Port       uint32
		OriginHost string
		OriginPort uint32
	}
	if err := ssh.Unmarshal(nc.ExtraData(), &req); err != nil {
		nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	t, err := net.Dial("tcp", net.JoinHostPort(req.Host, strconv.Itoa(int(req.Port))))
	if err != nil {
		nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		t.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	join(t.(*net.TCPConn), ch)
}

func client(server, listen, target string, cfg ssh.Config) error {
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		return err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return err
	}
	conn, err := ssh.Dial("tcp", server, &ssh.ClientConfig{Config: cfg, User: "bench",
		HostKeyCallback: ssh.InsecureIgnoreHostKey()})
	if err != nil {
		return err
	}
	return acceptLoop(listen, func(c net.Conn) {
		ch, err := conn.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err != nil {
			log.Printf("open channel: %v", err)
			c.Close()
			return
		}
		join(c.(*net.TCPConn), ch.(halfCloser))
	})
}

// halfCloser is an ssh.Channel or the net.Conn that ssh.Client.Dial returns.
type halfCloser interface {
	io.ReadWriteCloser
	CloseWrite() error
}

// join copies both ways, passing each end of stream on as a half-close
// (iperf3 shuts its sockets down that way), and closes both once done.
func join(t *net.TCPConn, ch halfCloser) {
	done := make(chan struct{}, 2)
	go func() {
		io.Copy(ch, t)
		ch.CloseWrite()
		done <- struct{}{}
	}()
	go func() {
		io.Copy(t, ch)
		t.CloseWrite()
		done <- struct{}{}
	}()
	<-done
	<-done
	t.Close()
	ch.Close()
}
