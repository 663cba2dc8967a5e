package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/netutil"

	"github.com/sshvpn/sshvpn/metrics"
	"github.com/sshvpn/sshvpn/status"
)

// metricsUsage is --metrics-listen's help, the same for serve and connect.
const metricsUsage = "serve Prometheus metrics on `[host:]port` at /metrics (a port alone, :port or localhost:port: loopback only; " +
	"*:port: every interface; the page asks for no password) (default: off)"

// metricsAddr is --metrics-listen: where the Prometheus endpoint listens,
// checked as it parses.
type metricsAddr string

func (a *metricsAddr) String() string { return string(*a) }

// Set implements flag.Value.
func (a *metricsAddr) Set(s string) error {
	if _, err := metricsBinds(s); err != nil {
		return err
	}
	*a = metricsAddr(s)
	return nil
}

// metricsBinds is where addr listens. Without a host (9100, :9100) or with
// localhost, that is both loopback addresses, as the proxies' binds are:
// the page says who is connected and how much they send, so it stays on
// the host unless the operator names an address. * is every interface.
func metricsBinds(addr string) ([]string, error) {
	host, port := "", addr
	if strings.Contains(addr, ":") {
		var err error
		if host, port, err = net.SplitHostPort(addr); err != nil {
			return nil, errMetricsAddr
		}
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return nil, errMetricsAddr
	}
	switch host {
	case "", "localhost":
		return []string{net.JoinHostPort("127.0.0.1", port), net.JoinHostPort("::1", port)}, nil
	case "*":
		return []string{":" + port}, nil
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return nil, errMetricsAddr
	}
	return []string{net.JoinHostPort(host, port)}, nil
}

var errMetricsAddr = errors.New("want [host:]port with an IP address, localhost or * as the host, like 9100, 198.18.0.1:9100 or [::]:9100")

// Timeouts of the metrics server: a scrape is one small request, so a
// client slower than these is stuck or hostile and loses its connection.
const (
	metricsHeaderTimeout = 5 * time.Second
	metricsIOTimeout     = 30 * time.Second
	metricsIdleTimeout   = 2 * time.Minute
	// metricsMaxConns bounds the connections served at once, per listener:
	// a scraper needs one, and open connections cost file descriptors the
	// SSH listener and the tunnels' sockets share.
	metricsMaxConns = 16
)

// serveMetrics serves report as Prometheus text on addr (--metrics-listen)
// until stop; an empty addr serves nothing. stop closes the listeners and
// waits for their goroutines.
func serveMetrics(ctx context.Context, addr string, report func() status.Report, log *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	binds, err := metricsBinds(addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen %s: %w", addr, err)
	}
	lns, err := listenMetrics(addr, binds, log)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{
		Handler:           metrics.Handler(report),
		ReadHeaderTimeout: metricsHeaderTimeout,
		ReadTimeout:       metricsIOTimeout,
		WriteTimeout:      metricsIOTimeout,
		IdleTimeout:       metricsIdleTimeout,
		MaxHeaderBytes:    8 << 10,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	var wg sync.WaitGroup
	for _, ln := range lns {
		log.Info("serving metrics", "on", "http://"+ln.Addr().String()+"/metrics")
		wg.Go(func() {
			if err := srv.Serve(netutil.LimitListener(ln, metricsMaxConns)); !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics listener stopped", "on", ln.Addr().String(), "err", err)
			}
		})
	}
	return func() {
		srv.Close()
		wg.Wait()
	}, nil
}

// listenMetrics opens every bind. An address of a family the host lacks
// (::1 without IPv6) is skipped when another opens; any other failure is
// the operator's to hear. Port 0 takes the first address's port for the
// rest, so that the page is on one port.
func listenMetrics(addr string, binds []string, log *slog.Logger) ([]net.Listener, error) {
	var (
		lns     []net.Listener
		skipped []error
		port    string
	)
	fail := func(err error) ([]net.Listener, error) {
		for _, ln := range lns {
			ln.Close()
		}
		return nil, err
	}
	for _, b := range binds {
		if host, p, _ := net.SplitHostPort(b); p == "0" && port != "" {
			b = net.JoinHostPort(host, port)
		}
		ln, err := net.Listen("tcp", b)
		switch {
		case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EAFNOSUPPORT):
			skipped = append(skipped, err)
			continue
		case errors.Is(err, syscall.EADDRINUSE):
			return fail(fmt.Errorf("--metrics-listen %s: listen on %s: address already in use: another process holds the port; pick another with --metrics-listen", addr, b))
		case err != nil:
			return fail(fmt.Errorf("--metrics-listen %s: %w", addr, err))
		}
		if port == "" {
			_, port, _ = net.SplitHostPort(ln.Addr().String())
		}
		lns = append(lns, ln)
	}
	if len(lns) == 0 {
		return nil, fmt.Errorf("--metrics-listen %s: %w", addr, errors.Join(skipped...))
	}
	if len(skipped) > 0 {
		log.Info("metrics: an address of this host's missing family was skipped", "err", errors.Join(skipped...))
	}
	return lns, nil
}
