package proxy

import (
	"io"
	"testing"

	xproxy "golang.org/x/net/proxy"
)

// BenchmarkSOCKSConnect moves 32 KiB out and back through one SOCKS5
// CONNECT over loopback per op; the splice allocates nothing per op.
func BenchmarkSOCKSConnect(b *testing.B) {
	d := &recordingDialer{to: echoServer(b)}
	addr := serve(b, NewServer(Config{Dial: d.Dial, SOCKS: true}))
	client, err := xproxy.SOCKS5("tcp", addr, nil, xproxy.Direct)
	if err != nil {
		b.Fatal(err)
	}
	c, err := client.Dial("tcp", "bench.invalid:9")
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 32<<10)
	b.SetBytes(2 * int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
}
