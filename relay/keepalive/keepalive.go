package keepalive

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// Watch implements ssh's ServerAliveInterval/ServerAliveCountMax and
// sshd's ClientAliveInterval/ClientAliveCountMax: every interval it sends a
// keepalive@openssh.com global request with want-reply (any reply, true or
// false, proves the peer alive). When countMax intervals pass in a row
// without a reply it closes c and returns an error.
// It returns ctx.Err() when ctx ends, and an error when c closes. With
// interval 0 it only waits for ctx. countMax below 1 counts as 1.
//
// rtt, when not nil, is told each answered keepalive's round trip, from
// the goroutine that waited for it: what sshvpn status shows.
//
// At most one request is outstanding; a request the server never answers
// ends when c is closed.
func Watch(ctx context.Context, c ssh.Conn, interval time.Duration, countMax int, rtt func(time.Duration)) error {
	if interval <= 0 {
		<-ctx.Done()
		return ctx.Err()
	}
	countMax = max(countMax, 1)
	t := time.NewTicker(interval)
	defer t.Stop()
	var inFlight atomic.Bool
	failed := make(chan error, 1)
	misses := 0
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-failed:
			return fmt.Errorf("keepalive: %w", err)
		case <-t.C:
		}
		if inFlight.Load() {
			if misses++; misses >= countMax {
				c.Close()
				return fmt.Errorf("peer not responding: %d keepalives unanswered", misses)
			}
			continue
		}
		misses = 0
		inFlight.Store(true)
		go func() {
			sent := time.Now()
			if _, _, err := c.SendRequest("keepalive@openssh.com", true, nil); err != nil {
				select {
				case failed <- err:
				default:
				}
				return
			}
			if rtt != nil {
				rtt(time.Since(sent))
			}
			inFlight.Store(false)
		}()
	}
}
