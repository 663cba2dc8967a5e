// Command socksfwd lets iperf3, which speaks no SOCKS, measure a SOCKS5
// proxy: it accepts TCP on -listen and carries each connection to -target
// through the proxy at -proxy (a CONNECT of its own per connection), bytes
// copied both ways and each end of stream passed on as a half-close.
//
//	socksfwd -listen 127.0.0.1:5201 -proxy 127.0.0.1:1080 -target HOST:PORT
//
// Every SOCKS row of the benchmark (ssh -D and sshvpn connect -D) goes
// through this same adapter, so its cost is the same in each of them. It
// prints "ready" once it listens; it does not check the proxy, which the
// harness has already reached through to the target by then.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"time"

	"golang.org/x/net/proxy"
)

// socksDialer is the part of x/net/proxy's SOCKS5 dialer used here: the
// CONNECT handshake over a connection the caller dialled, so that the
// caller keeps the *net.TCPConn (and its CloseWrite) instead of a wrapper
// that hides it.
type socksDialer interface {
	DialWithConn(ctx context.Context, c net.Conn, network, address string) (net.Addr, error)
}

// handshakeTimeout bounds the dial to the proxy and its answer to the
// CONNECT; a proxy slower than this is broken, not slow.
const handshakeTimeout = 10 * time.Second

func main() {
	log.SetFlags(0)
	log.SetPrefix("socksfwd: ")
	listen := flag.String("listen", "", "address to accept iperf3's connections on")
	proxyAddr := flag.String("proxy", "", "the SOCKS5 proxy's address")
	target := flag.String("target", "", "host:port the proxy connects each connection to")
	flag.Parse()
	if *listen == "" || *proxyAddr == "" || *target == "" {
		log.Fatal("usage: socksfwd -listen ADDR -proxy ADDR -target HOST:PORT")
	}
	log.Fatal(run(*listen, *proxyAddr, *target))
}

// run serves until accepting fails, and returns why.
func run(listen, proxyAddr, target string) error {
	d, err := proxy.SOCKS5("tcp", proxyAddr, nil, nil)
	if err != nil {
		return fmt.Errorf("SOCKS5 dialer for %s: %w", proxyAddr, err)
	}
	sd, ok := d.(socksDialer)
	if !ok {
		return fmt.Errorf("x/net/proxy's SOCKS5 dialer (%T) has no DialWithConn any more", d)
	}
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
		go func() {
			if err := forward(c.(*net.TCPConn), sd, proxyAddr, target); err != nil {
				log.Print(err)
			}
		}()
	}
}

// forward connects to target through the proxy and joins c to it.
func forward(c *net.TCPConn, sd socksDialer, proxyAddr, target string) error {
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	defer cancel()
	var nd net.Dialer
	pc, err := nd.DialContext(ctx, "tcp", proxyAddr)
	if err != nil {
		c.Close()
		return fmt.Errorf("dial proxy %s: %w", proxyAddr, err)
	}
	// DialWithConn puts ctx's deadline on pc for the handshake only.
	if _, err := sd.DialWithConn(ctx, pc, "tcp", target); err != nil {
		c.Close()
		pc.Close()
		return fmt.Errorf("CONNECT %s through %s: %w", target, proxyAddr, err)
	}
	join(c, pc.(*net.TCPConn))
	return nil
}

// join copies both ways, passing each end of stream on as a half-close
// (iperf3 shuts its sockets down that way), and closes both once done.
// Between two TCP sockets io.Copy splices in the kernel.
func join(a, b *net.TCPConn) {
	done := make(chan struct{}, 2)
	pipe := func(dst, src *net.TCPConn) {
		io.Copy(dst, src)
		dst.CloseWrite()
		done <- struct{}{}
	}
	go pipe(a, b)
	go pipe(b, a)
	<-done
	<-done
	a.Close()
	b.Close()
}
