package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/sshvpn/sshvpn/kernel"
)

// cleanup undoes, by hand, what a gateway or client killed outright left
// on this host: what its undo journal lists. A start does the same.
func cleanup(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sshvpn cleanup", flag.ContinueOnError)
	dir := fs.String("state-dir", kernel.DefaultStateDir(), "`directory` of the undo journals")
	if err := parseFlags(fs, args, stderr, "Usage: sshvpn cleanup [--state-dir dir]\n\nUndoes what a gateway or client killed outright left on this host."); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("cleanup takes no arguments, got %q", fs.Args())
	}
	log := newLogger(stderr, slog.LevelInfo)
	n, err := kernel.Recover(*dir, log)
	fmt.Fprintf(stdout, "sshvpn cleanup: %d host changes undone from %s\n", n, *dir)
	return err
}
