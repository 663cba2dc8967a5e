package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"

	"github.com/sshvpn/sshvpn/kernel"
	"github.com/sshvpn/sshvpn/status"
)

// cleanupAbout heads cleanup's -h and its man page.
const cleanupAbout = "Usage: sshvpn cleanup [--state-dir dir] [--log-format text|json]\n\nUndoes what a gateway or client killed outright left on this host."

// cleanupFlags defines cleanup's flags, for it, its man page and the
// completions.
func cleanupFlags(dir *string, format *logFormat) *flag.FlagSet {
	flags := flag.NewFlagSet("sshvpn cleanup", flag.ContinueOnError)
	flags.StringVar(dir, "state-dir", kernel.DefaultStateDir(), "`directory` of the undo journals")
	flags.Var(format, "log-format", logFormatUsage)
	return flags
}

// cleanup undoes, by hand, what a gateway or client killed outright left
// on this host: what its undo journal lists. A start does the same.
func cleanup(args []string, stdout, stderr io.Writer) error {
	dir, format := new(string), new(logFormat)
	flags := cleanupFlags(dir, format)
	if err := parseFlags(flags, args, stderr, cleanupAbout); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("cleanup takes no arguments, got: %s", strings.Join(flags.Args(), " "))
	}
	if _, err := os.Stat(*dir); errors.Is(err, fs.ErrNotExist) {
		// Nothing ever ran with it; cleanup makes no directories.
		fmt.Fprintf(stdout, "sshvpn cleanup: nothing to undo: %s does not exist\n", *dir)
		return nil
	}
	log := newLogger(stderr, slog.LevelInfo, *format)
	n, err := kernel.Recover(*dir, log)
	// And the status sockets of the processes that were killed.
	status.RemoveStale(*dir)
	fmt.Fprintf(stdout, "sshvpn cleanup: %d host changes undone from %s\n", n, *dir)
	return err
}
