package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"strconv"

	"github.com/sshvpn/sshvpn/kernel"
	"github.com/sshvpn/sshvpn/kernel/tun"
	"github.com/sshvpn/sshvpn/relay"
)

// localHost is what connect may do on this host for its device: as root,
// make and configure one, journaled; without CAP_NET_ADMIN, attach the
// device root prepared for this user and change nothing, as ssh -w does.
type localHost struct {
	unit    uint32 // the local unit of -w, or the premade device picked for any
	premade bool
	journal *kernel.Journal // nil for a premade device: nothing to undo
	bypass  kernel.Bypass   // zero for a premade device: marking sockets needs CAP_NET_ADMIN
}

// openLocalHost decides how connect gets its device for the local unit of
// -w. As root it first undoes what a killed client left (a persistent
// device keeps its addresses and routes) and then journals this run.
func openLocalHost(mode relay.Mode, unit uint32, stateDir string, log *slog.Logger) (*localHost, error) {
	if tun.CheckAccess() == nil && kernel.NeedsPremade() {
		d, err := kernel.FindPremade(mode, unit)
		if _, ok := errors.AsType[*kernel.PremadeError](err); ok {
			return nil, fmt.Errorf("%w; or, with no device at all, the rootless proxies: -D, -L or --http-proxy", err)
		}
		if err != nil {
			return nil, err
		}
		if d.Picked {
			log.Info("no CAP_NET_ADMIN: -w any takes the one free device root prepared for this user", "device", d.Name)
		}
		return &localHost{unit: d.Unit, premade: true}, nil
	}
	if err := kernel.CheckAccess(); err != nil {
		if ae, ok := errors.AsType[*tun.AccessError](err); ok {
			return nil, fmt.Errorf("%s: %w: sshvpn connect makes a tun/tap device, its addresses and routes: %s; %s", ae.Op, ae.Err, ae.Cure, withoutRoot(mode))
		}
		return nil, err
	}
	journal, err := kernel.OpenJournal(stateDir, log)
	if err != nil {
		return nil, err
	}
	// The mark goes on every socket of the transport from the first dial:
	// a full tunnel (asked for, or the gateway's routes) comes once that
	// connection is up, and the connection must then keep its path.
	// Without one, only a full tunnel fails (OpenLocal says why).
	bypass, err := kernel.NewBypass()
	if err != nil {
		log.Warn("no routing table for a full tunnel", "err", err)
	}
	return &localHost{unit: unit, journal: journal, bypass: bypass}, nil
}

// Close closes the journal, if there is one.
func (h *localHost) Close() error {
	if h.journal == nil {
		return nil
	}
	return h.journal.Close()
}

// withoutRoot names what a user without root can do instead.
func withoutRoot(mode relay.Mode) string {
	kind := "tun"
	if mode == relay.Ethernet {
		kind = "tap"
	}
	name := strconv.Itoa(os.Getuid())
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return fmt.Sprintf("without root, no device is needed for the far network from local ports: -D [bind:]port (a SOCKS5 and HTTP proxy), --http-proxy [bind:]port or -L [bind:]port:host:hostport; "+
		"or root prepares a device once (ip tuntap add %s0 mode %s user %s && ip link set %s0 up) and you connect with -w 0:any, as with ssh -w", kind, kind, name, kind)
}
