package main

import (
	"flag"
	"os"
	"reflect"
	"strings"

	"github.com/sshvpn/sshvpn/kernel"
)

// command is one sshvpn subcommand as its man page and the shell
// completions describe it. The flags come from the very function the
// command parses with, so neither can drift from -h.
type command struct {
	name    string
	summary string // one line, for sshvpn(1) and the completions' menus
	about   string // -h's header: a Usage: line, a blank line, the description
	flags   func() *flag.FlagSet
	// operands is what the words after the flags are: "host" (a
	// destination), a list of words, or "" for none.
	operands string
}

// commands is every command, in the order sshvpn(1) lists them.
func commands() []command {
	return []command{
		{"serve", `run a gateway that stock "ssh -w" clients and sshvpn connect tunnel into`, serveAbout,
			func() *flag.FlagSet { return serveFlags(&serveConfig{}) }, ""},
		{"connect", "open a tunnel to sshd (PermitTunnel) or an sshvpn gateway and keep it up", connectAbout,
			func() *flag.FlagSet { return connectFlags(&connectConfig{}, &connectFlagValues{}) }, "host"},
		{"status", "show the gateways and clients running on this host", statusAbout,
			func() *flag.FlagSet { return statusFlags(&statusConfig{}) }, "dump"},
		{"cleanup", "undo what a killed sshvpn left on this host", cleanupAbout,
			func() *flag.FlagSet { return cleanupFlags(new(string), new(logFormat)) }, ""},
		{"version", "print the version, the commit and the Go it was built with",
			"Usage: sshvpn version\n\nPrints the version, the commit it was built from (and whether the tree had changes), and the Go that built it.", nil, ""},
		{"man", "write the manual pages", manAbout,
			func() *flag.FlagSet { return manFlags(new(string)) }, "serve connect status cleanup"},
		{"completion", "write the bash or zsh completion script", completionAbout, nil, "bash zsh"},
	}
}

// lookupCommand finds a command by name.
func lookupCommand(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// flagList is a command's flags in name order; nil for none.
func (c command) flagList() []*flag.Flag {
	if c.flags == nil {
		return nil
	}
	var fl []*flag.Flag
	c.flags().VisitAll(func(f *flag.Flag) { fl = append(fl, f) })
	return fl
}

// dashed is a flag as the documentation writes it: -p for ssh's letters,
// --listen for the rest (the flag package takes one dash or two).
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// isBool reports whether f takes no value.
func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// argKind is what a flag's value completes as: "file", "directory", or
// "" for anything else, from the word the usage quotes as its argument.
func argKind(f *flag.Flag) string {
	name, _ := flag.UnquoteUsage(f)
	switch name {
	case "file", "directory":
		return name
	}
	return ""
}

// choices is a flag's fixed set of values, when its type has one.
func choices(f *flag.Flag) []string {
	if c, ok := f.Value.(interface{ Choices() []string }); ok {
		return c.Choices()
	}
	return nil
}

// shownDefault is the default a man page gives for f, "" when there is
// none worth saying: the flag package's rule (a zero value is not shown),
// and the user's own directories written as a reader's would be, so that
// pages built by one user read right for every other.
func shownDefault(f *flag.Flag) string {
	if isZeroValue(f) {
		return ""
	}
	d := f.DefValue
	if f.Name == "state-dir" && d == kernel.DefaultStateDir() {
		// Root's, the user's runtime directory or /tmp's: which one
		// depends on who runs it, not on who built the page.
		return stateDirDefault
	}
	for _, env := range []string{"XDG_RUNTIME_DIR", "XDG_STATE_HOME"} {
		if v := os.Getenv(env); v != "" && strings.HasPrefix(d, v+"/") {
			return "$" + env + d[len(v):]
		}
	}
	if home, err := os.UserHomeDir(); err == nil && home != "/" && strings.HasPrefix(d, home+"/") {
		return "~" + d[len(home):]
	}
	return d
}

// stateDirDefault says kernel.DefaultStateDir for every user.
const stateDirDefault = "/run/sshvpn as root, else $XDG_RUNTIME_DIR/sshvpn, else /tmp/sshvpn-UID"

// isZeroValue is the flag package's own test of a default not worth
// printing: the value's zero renders the same.
func isZeroValue(f *flag.Flag) (zero bool) {
	typ := reflect.TypeOf(f.Value)
	var z reflect.Value
	if typ.Kind() == reflect.Pointer {
		z = reflect.New(typ.Elem())
	} else {
		z = reflect.Zero(typ)
	}
	defer func() {
		if recover() != nil {
			zero = f.DefValue == ""
		}
	}()
	return f.DefValue == z.Interface().(flag.Value).String()
}
