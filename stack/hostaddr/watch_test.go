package hostaddr

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSource is a host whose addresses the test sets, with reports the test
// sends.
type fakeSource struct {
	mu       sync.Mutex
	addrs    []netip.Prefix
	complete bool
	listErr  error
	subErr   error
	feed     *fakeFeed
	closed   bool
}

func newFakeSource(addrs ...string) *fakeSource {
	s := &fakeSource{complete: true, feed: &fakeFeed{reports: make(chan error), stopped: make(chan struct{})}}
	s.set(addrs...)
	return s
}

func (s *fakeSource) set(addrs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addrs = nil
	for _, a := range addrs {
		s.addrs = append(s.addrs, netip.MustParsePrefix(a))
	}
}

func (s *fakeSource) list() ([]netip.Prefix, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listErr != nil {
		return nil, false, s.listErr
	}
	return slices.Clone(s.addrs), s.complete, nil
}

func (s *fakeSource) subscribe() (changes, error) {
	if s.subErr != nil {
		return nil, s.subErr
	}
	return s.feed, nil
}

func (s *fakeSource) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

// fakeFeed reports a change for each nil sent on reports, and ends with
// the first error.
type fakeFeed struct {
	reports chan error
	stopped chan struct{}
	once    sync.Once
}

func (f *fakeFeed) wait() error {
	select {
	case err := <-f.reports:
		return err
	case <-f.stopped:
		return net.ErrClosed
	}
}

func (f *fakeFeed) stop() { f.once.Do(func() { close(f.stopped) }) }

// report tells the Watcher of a change, or fails the test when it no
// longer waits for reports.
func (f *fakeFeed) report(t *testing.T, err error) {
	t.Helper()
	select {
	case f.reports <- err:
	case <-f.stopped:
		t.Fatal("the Watcher stopped its reports")
	case <-time.After(10 * time.Second):
		t.Fatal("the Watcher does not wait for reports")
	}
}

// syncBuffer is a log that the Watcher's goroutine writes while the test
// reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// recorder is a Watcher's Update and log.
type recorder struct {
	updates chan []netip.Prefix
	log     *syncBuffer
}

func startWatch(t *testing.T, src source, poll time.Duration) (*Watcher, *recorder) {
	t.Helper()
	r := &recorder{updates: make(chan []netip.Prefix, 100), log: &syncBuffer{}}
	w, err := watch(Config{
		Update:       func(p []netip.Prefix) { r.updates <- p },
		PollInterval: poll,
		Logger:       slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}, src)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w, r
}

// next is the next Update, within a deadline.
func (r *recorder) next(t *testing.T) []string {
	t.Helper()
	select {
	case p := <-r.updates:
		var out []string
		for _, a := range p {
			out = append(out, a.String())
		}
		return out
	case <-time.After(10 * time.Second):
		t.Fatalf("no update within 10 s; log:\n%s", r.log)
		return nil
	}
}

func (r *recorder) none(t *testing.T) {
	t.Helper()
	select {
	case p := <-r.updates:
		t.Fatalf("unexpected update %v", p)
	default:
	}
}

// TestWatchFollowsReports: the first listing reaches Update before Watch
// returns, and each report brings the listing after it.
func TestWatchFollowsReports(t *testing.T) {
	src := newFakeSource("198.18.0.1/24", "127.0.0.1/8", "198.18.0.1/24", "2001:2::1/64")
	_, r := startWatch(t, src, time.Hour)
	if got, want := r.next(t), []string{"127.0.0.1/8", "198.18.0.1/24", "2001:2::1/64"}; !slices.Equal(got, want) {
		t.Fatalf("first update %q, want %q (sorted, once each)", got, want)
	}
	if !strings.Contains(r.log.String(), "addresses=3") || !strings.Contains(r.log.String(), "changes=\"reported by the kernel\"") {
		t.Errorf("the start is not logged with the count:\n%s", r.log)
	}

	src.set("198.18.0.1/24", "127.0.0.1/8", "198.18.9.9/32")
	src.feed.report(t, nil)
	if got, want := r.next(t), []string{"127.0.0.1/8", "198.18.0.1/24", "198.18.9.9/32"}; !slices.Equal(got, want) {
		t.Fatalf("update %q, want %q", got, want)
	}
	for _, line := range []string{`msg="host address added" addr=198.18.9.9/32`, `msg="host address removed" addr=2001:2::1/64`} {
		if !strings.Contains(r.log.String(), line) {
			t.Errorf("no %s in the log:\n%s", line, r.log)
		}
	}
	// A report that changed nothing the listing shows is no update.
	src.feed.report(t, nil)
	src.feed.report(t, nil) // taken only once the first's listing is done
	r.none(t)
}

// TestWatchPollsWithoutReports: when the kernel gives no reports, the
// addresses are listed at intervals, and the reason is logged.
func TestWatchPollsWithoutReports(t *testing.T) {
	src := newFakeSource("198.18.0.1/24")
	src.subErr = errors.New("netlink: permission denied")
	_, r := startWatch(t, src, 5*time.Millisecond)
	r.next(t)
	if !strings.Contains(r.log.String(), "listing its addresses at intervals instead") || !strings.Contains(r.log.String(), "permission denied") {
		t.Errorf("the fallback is not logged with its reason:\n%s", r.log)
	}
	src.set("198.18.0.1/24", "198.18.0.2/24")
	if got := r.next(t); !slices.Contains(got, "198.18.0.2/24") {
		t.Fatalf("update %q lacks the new address", got)
	}
}

// TestWatchReportsEnd: reports that break fall back to listing at
// intervals.
func TestWatchReportsEnd(t *testing.T) {
	src := newFakeSource("198.18.0.1/24")
	_, r := startWatch(t, src, 5*time.Millisecond)
	r.next(t)
	src.feed.report(t, errors.New("socket gone"))
	src.set("198.18.0.1/24", "198.18.0.2/24")
	if got := r.next(t); !slices.Contains(got, "198.18.0.2/24") {
		t.Fatalf("update %q lacks the new address", got)
	}
	if !strings.Contains(r.log.String(), "reports of the host's address changes ended") || !strings.Contains(r.log.String(), "socket gone") {
		t.Errorf("the end of reports is not logged with its reason:\n%s", r.log)
	}
	select {
	case <-src.feed.stopped:
	default:
		t.Error("the broken feed was not stopped")
	}
}

// TestWatchKeepsAddressesOnBadListings: a listing that failed changes
// nothing, and one a change interrupted drops nothing.
func TestWatchKeepsAddressesOnBadListings(t *testing.T) {
	src := newFakeSource("198.18.0.1/24", "198.18.0.2/24")
	_, r := startWatch(t, src, time.Hour)
	r.next(t)

	src.mu.Lock()
	src.complete = false
	src.mu.Unlock()
	src.set("198.18.0.1/24", "198.18.0.3/24") // .2 missing from an interrupted dump
	src.feed.report(t, nil)
	if got, want := r.next(t), []string{"198.18.0.1/24", "198.18.0.2/24", "198.18.0.3/24"}; !slices.Equal(got, want) {
		t.Fatalf("after an interrupted listing: %q, want %q", got, want)
	}

	src.mu.Lock()
	src.complete, src.listErr = true, errors.New("netlink: no buffer space")
	src.mu.Unlock()
	src.feed.report(t, nil)
	src.feed.report(t, nil) // the first report's listing is done
	r.none(t)
	if !strings.Contains(r.log.String(), "no buffer space") {
		t.Errorf("the failed listing is not logged:\n%s", r.log)
	}

	src.mu.Lock()
	src.listErr = nil
	src.mu.Unlock()
	src.feed.report(t, nil)
	if got, want := r.next(t), []string{"198.18.0.1/24", "198.18.0.3/24"}; !slices.Equal(got, want) {
		t.Fatalf("after a complete listing: %q, want %q", got, want)
	}
}

// TestWatchFirstListingFails: without a first listing there is nothing to
// follow; the source is closed.
func TestWatchFirstListingFails(t *testing.T) {
	src := newFakeSource()
	src.listErr = errors.New("netlink: operation not permitted")
	_, err := watch(Config{Update: func([]netip.Prefix) { t.Error("Update called") }}, src)
	if err == nil || !strings.Contains(err.Error(), "operation not permitted") {
		t.Fatalf("watch = %v, want the listing's error", err)
	}
	if !src.closed {
		t.Error("the source is left open")
	}
	select {
	case <-src.feed.stopped:
	default:
		t.Error("the reports are left running")
	}
}

// TestWatchClose: Close stops the goroutine and waits for it, closes the
// source, and may be called twice.
func TestWatchClose(t *testing.T) {
	for _, poll := range []bool{false, true} {
		src := newFakeSource("198.18.0.1/24")
		if poll {
			src.subErr = errors.New("no reports")
		}
		w, r := startWatch(t, src, time.Millisecond)
		r.next(t)
		w.Close()
		select {
		case <-w.exited:
		default:
			t.Fatalf("poll=%v: Close returned before the goroutine ended", poll)
		}
		src.mu.Lock()
		closed := src.closed
		src.mu.Unlock()
		if !closed {
			t.Errorf("poll=%v: the source is left open", poll)
		}
		w.Close()
	}
}

func TestPrefixOf(t *testing.T) {
	for _, tt := range []struct {
		ip   net.IP
		mask net.IPMask
		want string
	}{
		{net.ParseIP("198.18.0.1"), net.CIDRMask(24, 32), "198.18.0.1/24"},       // 16-byte IPv4, 4-byte mask
		{net.ParseIP("198.18.0.1").To4(), net.CIDRMask(32, 32), "198.18.0.1/32"}, // 4-byte
		{net.ParseIP("198.18.0.1"), net.CIDRMask(120, 128), "198.18.0.1/24"},     // mapped mask
		{net.ParseIP("2001:2::1"), net.CIDRMask(64, 128), "2001:2::1/64"},
		{net.ParseIP("2001:2::1"), net.IPMask{0xff, 0, 0xff}, "2001:2::1/128"}, // not a prefix: the address alone
	} {
		if got, ok := prefixOf(tt.ip, tt.mask); !ok || got.String() != tt.want {
			t.Errorf("prefixOf(%v, %v) = %v, %v; want %s", tt.ip, tt.mask, got, ok, tt.want)
		}
	}
	if _, ok := prefixOf(net.IP{1, 2, 3}, nil); ok {
		t.Error("prefixOf took a 3-byte address")
	}
}
