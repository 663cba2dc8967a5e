package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net"
)

// Forward is ssh -L: each connection to the listener dialled to Host:Port.
type Forward struct {
	Dial     DialFunc
	Host     string // a name or an address literal, passed to Dial as it is
	Port     uint16
	MaxConns int // per listener; 0: DefaultMaxConns. Beyond it a connection is closed at once.
	Log      *slog.Logger

	stats Stats
}

// Stats returns the Forward's live counters.
func (f *Forward) Stats() *Stats { return &f.stats }

// Serve accepts on ln until ctx ends or ln closes, like Server.Serve.
func (f *Forward) Serve(ctx context.Context, ln net.Listener) error {
	if f.Dial == nil {
		return fmt.Errorf("forward on %s: Dial is nil", ln.Addr())
	}
	log := f.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &acceptLoop{max: f.MaxConns, log: log, stats: &f.stats, handle: func(o *owner, c net.Conn, handshakeDone func()) {
		handshakeDone() // a forward has no handshake: its client waits for the far end
		ctx, cancel := context.WithTimeout(o.ctx, dialTimeout)
		far, err := f.Dial(ctx, f.Host, f.Port)
		cancel()
		if err != nil {
			r := ReasonOf(err)
			f.stats.dialFailures[r].Add(1)
			log.Debug("forward: dial failed", "client", c.RemoteAddr(), "dest", hostPort(f.Host, f.Port), "reason", r, "err", err)
			return
		}
		stop := o.closeOnDone(far)
		defer stop()
		splice(c, far, &f.stats, o.spawn)
	}}
	return a.run(ctx, ln)
}
