// Command sshvpn turns an SSH connection into a VPN: see README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	onSignals(cancel)
	// As ssh does: a log reader that went away (connect -f | logger) must
	// not kill sshvpn before it has undone what it set up.
	signal.Ignore(syscall.SIGPIPE)
	stopProfile, err := startProfile()
	if err == nil {
		err = run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stopProfile()
	}
	cancel()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		if err.Error() != "" {
			fmt.Fprintln(os.Stderr, "sshvpn:", err)
		}
		os.Exit(exitCode(err))
	}
}

// onSignals stops the command on the first SIGINT or SIGTERM, which tears
// everything down, and exits at once on the second, as ssh does: what is
// left is in the undo journal for the next run or sshvpn cleanup. SIGHUP
// is each command's: serve re-reads authorized_keys and its --config file,
// connect stops as ssh does when its terminal goes. The signals are caught
// before it returns: one that came before would kill the process with
// whatever it had set up.
func onSignals(stop context.CancelFunc) {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go exitOnSecond(sigs, stop)
}

// exitOnSecond stops on the first signal and exits on a second.
func exitOnSecond(sigs <-chan os.Signal, stop context.CancelFunc) {
	first := <-sigs
	at := time.Now()
	stop()
	var sig os.Signal
	for sig = range sigs {
		// The same signal again at once is the same request: GNU timeout
		// sends it to the process and then to its process group.
		if sig != first || time.Since(at) > sameSignal {
			break
		}
	}
	fmt.Fprintf(os.Stderr, "sshvpn: %v again: exiting now; sshvpn cleanup undoes what is left\n", sig)
	code := 128 + 2
	if s, ok := sig.(syscall.Signal); ok {
		code = 128 + int(s)
	}
	os.Exit(code)
}

// sameSignal is how soon a repeat of the first signal counts as the same.
const sameSignal = 200 * time.Millisecond

// exitError carries a command's exit status: connect exits 255 on errors,
// as ssh does.
type exitError struct {
	code int
	err  error // nil: already reported
}

func (e *exitError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	if e, ok := errors.AsType[*exitError](err); ok {
		return e.code
	}
	return 1
}

const usage = `sshvpn turns any SSH connection into a VPN.

Usage:
  sshvpn serve [flags]             run a gateway that stock "ssh -w" clients tunnel into
  sshvpn connect [flags] [user@]host  open a tunnel to sshd (PermitTunnel) or an sshvpn gateway
  sshvpn status [flags] [dump]     show the gateways and clients running on this host
  sshvpn cleanup [--state-dir dir] undo what a killed sshvpn left on this host
  sshvpn version                   print the version, the commit and the Go it was built with
  sshvpn man [command]             write a manual page (roff)
  sshvpn completion bash|zsh       write the shell's completion script

Run "sshvpn serve -h" or "sshvpn connect -h" for their flags.
`

// run is main without the process: tests call it directly.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stdout, stderr)
	case "connect":
		if err := connect(ctx, args[1:], stderr); err != nil && !errors.Is(err, flag.ErrHelp) {
			if _, ok := errors.AsType[*exitError](err); !ok {
				err = &exitError{255, err}
			}
			return err
		}
		return nil
	case "status":
		return runStatus(ctx, args[1:], stdout, stderr)
	case "cleanup":
		return cleanup(args[1:], stdout, stderr)
	case "man":
		return manPages(args[1:], stdout, stderr)
	case "completion":
		return completion(args[1:], stdout)
	case "version", "--version", "-version":
		fmt.Fprint(stdout, versionText())
		return nil
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	if near := nearest(args[0], commandNames()); near != "" {
		return fmt.Errorf("unknown command %q: did you mean %q? (sshvpn help lists the commands)", args[0], near)
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}
