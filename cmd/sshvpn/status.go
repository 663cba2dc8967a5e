package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/term"

	"github.com/sshvpn/sshvpn/kernel"
	"github.com/sshvpn/sshvpn/status"
)

// statusConfig is what `sshvpn status` was asked to do.
type statusConfig struct {
	stateDir    string
	stateDirSet bool // --state-dir given: ask there alone
	socket      string
	json        bool
	watch       watchFlag
	dump        bool
}

// statusAbout heads status's -h and its man page.
const statusAbout = `Usage: sshvpn status [flags] [dump]

Shows every sshvpn serve and sshvpn connect running on this host as the
same user (root sees its own): gateways with their connections and
tunnels, clients with their state. Each process serves its status on a
unix socket in its --state-dir that only its user and root may open.

"sshvpn status dump" prints tab-separated lines for scripts instead.

` + status.DumpColumns

// statusFlags defines status's flags on c.
func statusFlags(c *statusConfig) *flag.FlagSet {
	fs := flag.NewFlagSet("sshvpn status", flag.ContinueOnError)
	fs.StringVar(&c.stateDir, "state-dir", kernel.DefaultStateDir(), "`directory` the processes were started with (their --state-dir); root also looks in "+gatewayServiceDir+", sshvpn.service's")
	fs.StringVar(&c.socket, "socket", "", "ask only the process at this status socket `path`")
	fs.BoolVar(&c.json, "json", false, "print the reports as a JSON array, each with its schema version")
	fs.Var(&c.watch, "watch", "redraw every `interval` (--watch alone: 1s) until interrupted")
	return fs
}

// watchFlag is --watch, with or without an interval.
type watchFlag struct{ every time.Duration }

func (w *watchFlag) String() string {
	if w == nil || w.every == 0 {
		return ""
	}
	return w.every.String()
}

// Set implements flag.Value.
func (w *watchFlag) Set(s string) error {
	if s == "true" {
		w.every = time.Second
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 100*time.Millisecond {
		return fmt.Errorf("--watch %q: want an interval of 100ms or more, such as 2s", s)
	}
	w.every = d
	return nil
}

// IsBoolFlag lets --watch stand alone.
func (w *watchFlag) IsBoolFlag() bool { return true }

func parseStatus(args []string, stderr io.Writer) (*statusConfig, error) {
	c := &statusConfig{}
	fs := statusFlags(c)
	if err := parseFlags(fs, args, stderr, statusAbout); err != nil {
		return nil, err
	}
	c.stateDirSet = visited(fs)["state-dir"]
	rest := fs.Args()
	// --watch 2s: the interval given apart, as watch(1) takes it.
	if c.watch.every != 0 && len(rest) > 0 {
		if d, err := time.ParseDuration(rest[0]); err == nil {
			if err := c.watch.Set(d.String()); err != nil {
				return nil, err
			}
			rest = rest[1:]
		}
	}
	if len(rest) > 0 && rest[0] == "dump" {
		c.dump, rest = true, rest[1:]
		if err := fs.Parse(rest); err != nil { // flags after dump
			return nil, fmt.Errorf("%v (sshvpn status -h lists the flags)", err)
		}
		rest = fs.Args()
		c.stateDirSet = visited(fs)["state-dir"]
	}
	if len(rest) > 0 {
		return nil, fmt.Errorf("status takes flags and dump, got %q", rest)
	}
	if c.dump && c.json {
		return nil, errors.New("dump and --json: give one")
	}
	return c, nil
}

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseStatus(args, stderr)
	if err != nil {
		return err
	}
	if c.watch.every == 0 {
		return showStatus(ctx, c, stdout)
	}
	tty := isTerminal(stdout)
	t := time.NewTicker(c.watch.every)
	defer t.Stop()
	for {
		if tty {
			fmt.Fprint(stdout, "\x1b[H\x1b[2J") // home, clear
		}
		if err := showStatus(ctx, c, stdout); err != nil {
			fmt.Fprintln(stderr, "sshvpn:", err)
		}
		if !tty {
			fmt.Fprintln(stdout)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// showStatus prints the reports once. What it could read is printed even
// when another socket failed; the failure is the error.
func showStatus(ctx context.Context, c *statusConfig, stdout io.Writer) error {
	reports, err := queryStatus(ctx, c)
	if len(reports) > 0 {
		var perr error
		switch {
		case c.json:
			perr = status.WriteJSON(stdout, reports)
		case c.dump:
			perr = status.WriteDump(stdout, reports)
		default:
			perr = status.WriteTable(stdout, reports, time.Now())
		}
		err = errors.Join(perr, err)
	}
	return err
}

func queryStatus(ctx context.Context, c *statusConfig) ([]status.Report, error) {
	if c.socket == "" {
		return queryDirs(ctx, c.stateDirs())
	}
	r, err := status.Fetch(ctx, c.socket)
	if err != nil {
		if _, stale := errors.AsType[*status.StaleError](err); stale {
			return nil, fmt.Errorf("%w: %v", status.ErrNoProcess, err)
		}
		return nil, err
	}
	return []status.Report{r}, nil
}

// gatewayServiceDir is where sshvpn.service, the rootless gateway's
// unit, keeps its state: a directory of its own, as its dynamic user owns
// it and root's processes keep theirs in the default one.
const gatewayServiceDir = "/run/sshvpn-gateway"

// stateDirs are the directories status asks in: --state-dir if given;
// else the default one, and for root the rootless gateway service's too,
// so that "sudo sshvpn status" finds every sshvpn of this host's units.
func (c *statusConfig) stateDirs() []string {
	if c.stateDirSet || os.Geteuid() != 0 {
		return []string{c.stateDir}
	}
	dirs := []string{c.stateDir}
	if _, err := os.Stat(gatewayServiceDir); err == nil && c.stateDir != gatewayServiceDir {
		dirs = append(dirs, gatewayServiceDir)
	}
	return dirs
}

// queryDirs asks the processes of every dir; it says that none runs only
// when no dir has one.
func queryDirs(ctx context.Context, dirs []string) ([]status.Report, error) {
	var reports []status.Report
	var errs, none []error
	for _, dir := range dirs {
		rs, err := status.Query(ctx, dir)
		reports = append(reports, rs...)
		switch {
		case errors.Is(err, status.ErrNoProcess):
			none = append(none, err)
		case err != nil:
			errs = append(errs, err)
		}
	}
	if len(reports) == 0 && len(errs) == 0 {
		return nil, errors.Join(none...)
	}
	return reports, errors.Join(errs...)
}

// serveStatus serves report on the process's status socket in dir until
// the returned stop is called. A socket that cannot be made costs the
// status command, not the tunnel: it is logged.
func serveStatus(dir, role string, report func() status.Report, log *slog.Logger) (stop func()) {
	srv, err := status.Listen(dir, role, report, log)
	if err != nil {
		log.Warn("sshvpn status will not see this process", "err", err)
		return func() {}
	}
	return func() { srv.Close() }
}

// selfReport is the process's Report as its status socket and its
// metrics page give it: who the process is from its start, and its role's
// state once that is known (set), so that the metrics page, which listens
// before the gateway or the tunnel exists, shows the same as status.
type selfReport struct {
	role    string
	pid     int
	started time.Time
	state   atomic.Pointer[func() status.Report]
}

func newSelfReport(role string, started time.Time) *selfReport {
	return &selfReport{role: role, pid: os.Getpid(), started: started}
}

// set makes state the source of the role's part of the report.
func (s *selfReport) set(state func() status.Report) { s.state.Store(&state) }

func (s *selfReport) report() status.Report {
	var r status.Report
	if f := s.state.Load(); f != nil {
		r = (*f)()
	}
	r.Schema, r.Role, r.PID, r.Version, r.Started = status.Schema, s.role, s.pid, version, s.started
	return r
}
