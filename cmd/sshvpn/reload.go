package main

import (
	"errors"
	"flag"
	"io"
	"log/slog"
	"slices"
	"strings"
	"syscall"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/gateway"
	"github.com/sshvpn/sshvpn/sdnotify"
	"github.com/sshvpn/sshvpn/stack"
)

// A SIGHUP reloads what can change under running tunnels, as sshd re-reads
// its configuration, and drops none of them:
//
//   - authorized_keys, always: a key removed cannot log in again, one
//     added can.
//   - the --config file, re-read with the command line winning as at
//     start. Of its settings these take effect: the limits (for what is
//     admitted next; what is held stays, even above a lowered limit),
//     --allow and --deny (for every tunnel's next flow, tunnels open now
//     included; established flows go on, as a stateful firewall keeps
//     established connections), --dns and --dns-domain on the netstack
//     backend (for tunnels opened next) and --log-level. Any other
//     change is logged as needing a restart and keeps its old value. A
//     file with a problem changes nothing, and its problems are logged.

// limitFlags are the flags of gateway.Limits.
var limitFlags = []string{
	"max-startups", "per-source-max-startups", "max-connections-per-key",
	"max-tunnels-per-key", "max-forwards-per-connection", "max-forwards-per-key",
}

// reloader puts a re-read configuration in force.
type reloader struct {
	args     []string
	keys     *gateway.AuthorizedKeys
	srv      *gateway.Server
	netstack *stack.Gateway // nil with the kernel backend
	level    *slog.LevelVar
	log      *slog.Logger
	inForce  map[string]string // every flag's value as running
	ethernet bool              // ethernet tunnels are permitted
}

// flagValues are fs's flags' values, as they print.
func flagValues(fs *flag.FlagSet) map[string]string {
	m := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) { m[f.Name] = f.Value.String() })
	return m
}

// live reports whether a change of flag name can be put in force.
func (r *reloader) live(name string) bool {
	switch name {
	case "log-level":
		return true
	case "allow", "deny", "dns", "dns-domain":
		return r.netstack != nil
	}
	return slices.Contains(limitFlags, name)
}

// reload re-reads authorized_keys and the config file.
func (r *reloader) reload() {
	if err := r.keys.Reload(); err != nil {
		r.log.Error("SIGHUP: authorized_keys not reloaded; the keys read before stay in force", "err", err)
	} else {
		r.log.Info("SIGHUP: authorized_keys reloaded", "file", r.keys.Path(), "keys", r.keys.Len())
	}
	file := r.inForce["config"]
	if file == "" {
		return
	}
	c, fs, errs := loadServe(r.args, io.Discard)
	if len(errs) > 0 {
		r.log.Error("SIGHUP: config not reloaded; all of the configuration before stays in force", "file", file, "problems", errorLines(errs))
		return
	}
	var applied, restart []string
	for name, v := range flagValues(fs) {
		if v == r.inForce[name] {
			continue
		}
		if !r.live(name) {
			restart = append(restart, name)
			continue
		}
		applied = append(applied, name)
	}
	slices.Sort(applied)
	slices.Sort(restart)
	applied = r.apply(c, applied)
	now := flagValues(fs)
	for _, name := range applied {
		r.inForce[name] = now[name]
	}
	if len(restart) > 0 {
		r.log.Warn("SIGHUP: needs a restart: "+strings.Join(restart, ", ")+"; these keep the values the gateway started with", "file", file)
	}
	r.log.Info("SIGHUP: config reloaded", "file", file, "changed", strings.Join(applied, ","))
}

// apply puts c's values of the flags named in force, and returns those it
// did.
func (r *reloader) apply(c *serveConfig, names []string) []string {
	done := names[:0:0]
	limits, rules, dns := false, false, false
	for _, n := range names {
		switch {
		case slices.Contains(limitFlags, n):
			limits = true
		case n == "allow" || n == "deny":
			rules = true
		case n == "dns" || n == "dns-domain":
			dns = true
		case n == "log-level":
			r.level.Set(c.level.Level)
		}
		done = append(done, n)
	}
	if limits {
		r.srv.SetLimits(c.limits)
	}
	if rules {
		r.netstack.SetRules(c.rootless.rules)
	}
	if dns {
		if err := r.netstack.SetDNS(c.dns, c.dnsDomains, r.ethernet); err != nil {
			r.log.Error("SIGHUP: --dns and --dns-domain not changed", "err", err)
			done = slices.DeleteFunc(done, func(n string) bool { return n == "dns" || n == "dns-domain" })
		}
	}
	return done
}

// errorLines joins errors one per line, each maybe several (errors.Join).
func errorLines(errs []error) string {
	return errors.Join(errs...).Error()
}

// reloadOnHangup calls reload on every SIGHUP until stop, telling systemd
// of each reload's start (RELOADING=1) and end (READY=1). systemctl
// reload does not wait for the end: the units' ExecReload=/bin/kill -HUP
// returns once the signal is sent. Waiting needs Type=notify-reload
// (systemd 253 and later; Debian 12 has 252); the log says when a reload
// is done.
func reloadOnHangup(r *reloader, notify *sdnotify.Notifier) (stop func()) {
	return onSignal(syscall.SIGHUP, func() {
		notify.Reloading()
		r.reload()
		notify.Ready()
	})
}

// newReloader is the reloader of a gateway started with c and fs.
func newReloader(args []string, c *serveConfig, fs *flag.FlagSet, keys *gateway.AuthorizedKeys, srv *gateway.Server,
	ns *stack.Gateway, level *slog.LevelVar, log *slog.Logger) *reloader {
	return &reloader{args: args, keys: keys, srv: srv, netstack: ns, level: level, log: log,
		inForce: flagValues(fs), ethernet: c.permit.Allows(relay.Ethernet)}
}
