package hostaddr

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// DefaultPollInterval is how often the addresses are listed when the kernel
// reports no changes: an address the host gains is not denied for up to
// this long. A listing is one netlink dump, so this costs next to nothing.
const DefaultPollInterval = 2 * time.Second

// Config is what Watch follows the addresses with.
type Config struct {
	// Update receives the host's addresses, each with its prefix length
	// (192.0.2.10/24), sorted: once before Watch returns, then after each
	// change, never twice at once. egress.HostSet.Set fits.
	Update func([]netip.Prefix)
	// PollInterval is how often the addresses are listed without change
	// reports; DefaultPollInterval when zero.
	PollInterval time.Duration
	Logger       *slog.Logger
}

// Watcher follows the addresses on one goroutine, which Close stops.
type Watcher struct {
	cfg    Config
	src    source
	feed   changes // nil when polling
	last   []netip.Prefix
	sent   bool // Update has had last
	done   chan struct{}
	exited chan struct{}
	once   sync.Once
}

// source is where the addresses come from: one per system.
type source interface {
	// list gives the addresses. complete is false when a change
	// interrupted the listing, which may then lack some.
	list() (addrs []netip.Prefix, complete bool, err error)
	// subscribe starts reporting changes.
	subscribe() (changes, error)
	close()
}

// changes reports address changes.
type changes interface {
	// wait blocks until the kernel reports one or more changes, and takes
	// every report queued, so that a burst costs one listing. It returns
	// an error when the reports end: after stop, or when they broke.
	wait() error
	// stop ends the reports and unblocks wait; it may be called twice.
	stop()
}

// Watch lists the addresses of the network namespace it is called in,
// hands them to cfg.Update, and follows them until Close.
func Watch(cfg Config) (*Watcher, error) {
	src, err := openSource()
	if err != nil {
		return nil, fmt.Errorf("hostaddr: %w", err)
	}
	return watch(cfg, src)
}

func watch(cfg Config, src source) (*Watcher, error) {
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{cfg: cfg, src: src, done: make(chan struct{}), exited: make(chan struct{})}
	// Subscribe before the first listing, so that no change after it
	// goes unreported. A first listing that a change interrupted is
	// published as it is: the change's report brings the next one.
	feed, subErr := src.subscribe()
	addrs, _, err := src.list()
	if err != nil {
		if feed != nil {
			feed.stop()
		}
		src.close()
		return nil, fmt.Errorf("hostaddr: %w", err)
	}
	w.publish(addrs)
	how := "reported by the kernel"
	if subErr != nil {
		how = "listed every " + cfg.PollInterval.String()
		cfg.Logger.Warn("no reports of the host's address changes: listing its addresses at intervals instead", "err", subErr, "interval", cfg.PollInterval)
	}
	cfg.Logger.Info("the host's own addresses are denied to clients", "addresses", len(w.last), "changes", how)
	w.feed = feed
	go w.run()
	return w, nil
}

// run lists the addresses after each reported change; when reports end
// before Close, at intervals.
func (w *Watcher) run() {
	defer close(w.exited)
	if w.feed != nil {
		for {
			err := w.feed.wait()
			if w.closing() {
				return
			}
			if err != nil {
				w.feed.stop()
				w.cfg.Logger.Warn("reports of the host's address changes ended: listing its addresses at intervals instead", "err", err, "interval", w.cfg.PollInterval)
				break
			}
			w.refresh()
		}
	}
	t := time.NewTicker(w.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-w.done:
			return
		case <-t.C:
			w.refresh()
		}
	}
}

func (w *Watcher) closing() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// refresh lists the addresses and publishes them. A listing that failed
// changes nothing, and one that a change interrupted adds addresses but
// drops none: the interrupting change is reported, and the listing after
// it settles the set.
func (w *Watcher) refresh() {
	addrs, complete, err := w.src.list()
	if err != nil {
		w.cfg.Logger.Warn("cannot list the host's addresses: the last ones listed stay denied", "err", err)
		return
	}
	if !complete {
		addrs = append(addrs, w.last...)
	}
	w.publish(addrs)
}

// publish hands addrs to Update when they differ from the last, logging
// each change.
func (w *Watcher) publish(addrs []netip.Prefix) {
	addrs = slices.Clone(addrs)
	slices.SortFunc(addrs, comparePrefix)
	addrs = slices.Compact(addrs)
	if w.sent && slices.Equal(addrs, w.last) {
		return
	}
	for _, p := range addrs {
		if _, found := slices.BinarySearchFunc(w.last, p, comparePrefix); !found {
			w.cfg.Logger.Debug("host address added", "addr", p)
		}
	}
	for _, p := range w.last {
		if _, found := slices.BinarySearchFunc(addrs, p, comparePrefix); !found {
			w.cfg.Logger.Debug("host address removed", "addr", p)
		}
	}
	w.last, w.sent = addrs, true
	w.cfg.Update(slices.Clone(addrs))
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// Close stops following the addresses and waits for the goroutine; Update
// is not called after it returns.
func (w *Watcher) Close() error {
	w.once.Do(func() {
		close(w.done)
		if w.feed != nil {
			w.feed.stop()
		}
		<-w.exited
		w.src.close()
	})
	return nil
}

// prefixOf turns an interface address into a prefix: the address, unmapped
// and unzoned, with its prefix length.
func prefixOf(ip net.IP, mask net.IPMask) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	ones, bits := mask.Size()
	if bits == 128 && a.Is4() {
		ones -= 96
	}
	if bits == 0 || ones < 0 || ones > a.BitLen() {
		ones = a.BitLen()
	}
	return netip.PrefixFrom(a, ones), true
}
