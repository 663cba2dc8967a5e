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
)

func main() {
	// SIGHUP is each command's: serve re-reads authorized_keys, connect
	// stops as ssh does when its terminal goes.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "sshvpn:", err)
		os.Exit(1)
	}
}

const usage = `sshvpn turns any SSH connection into a VPN.

Usage:
  sshvpn serve [flags]             run a gateway that stock "ssh -w" clients tunnel into
  sshvpn connect [flags] [user@]host  open a tunnel to sshd (PermitTunnel) or an sshvpn gateway
  sshvpn cleanup [--state-dir dir] undo what a killed sshvpn left on this host
  sshvpn version                   print the version

Run "sshvpn serve -h" or "sshvpn connect -h" for their flags.
`

// version is set by the linker for releases.
var version = "devel"

// run is main without the process: tests call it directly.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stderr)
	case "connect":
		return connect(ctx, args[1:], stderr)
	case "cleanup":
		return cleanup(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "sshvpn", version)
		return nil
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}
