package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
)

// manAbout heads man's -h and its entry in sshvpn(1).
const manAbout = "Usage: sshvpn man [--dir directory] [command]\n\n" +
	"Writes the manual page of command, or sshvpn(1) without one, to stdout in roff (man(7)): man -l - shows it. " +
	"With --dir, writes every page into the directory instead, as sshvpn.1, sshvpn-serve.1 and so on. " +
	"The pages are made from the flags the commands parse, so they say what -h says."

func manFlags(dir *string) *flag.FlagSet {
	fs := flag.NewFlagSet("sshvpn man", flag.ContinueOnError)
	fs.StringVar(dir, "dir", "", "`directory` to write every page into, as NAME.1")
	return fs
}

// manPages is the man command.
func manPages(args []string, stdout, stderr io.Writer) error {
	var dir string
	fs := manFlags(&dir)
	if err := parseFlags(fs, args, stderr, manAbout); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 1:
		return fmt.Errorf("man takes at most one command, got: %s", strings.Join(fs.Args(), " "))
	case dir != "" && fs.NArg() > 0:
		return errors.New("man: give --dir for every page, or a command for its page on stdout")
	case dir != "":
		return writeManDir(dir)
	case fs.NArg() == 0:
		return writeMainPage(stdout)
	}
	c, ok := lookupCommand(fs.Arg(0))
	if !ok || c.flags == nil {
		return fmt.Errorf("man: no page for %q; the commands with flags have one: %s", fs.Arg(0), strings.Join(pagedCommands(), ", "))
	}
	return writeCommandPage(stdout, c)
}

// pagedCommands are the commands with a page of their own: those with
// flags. The rest are described in sshvpn(1).
func pagedCommands() []string {
	var names []string
	for _, c := range commands() {
		if c.flags != nil && c.name != "man" {
			names = append(names, c.name)
		}
	}
	return names
}

// writeManDir writes sshvpn.1 and one page per paged command into dir.
func writeManDir(dir string) error {
	var b bytes.Buffer
	if err := writeMainPage(&b); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "sshvpn.1"), b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("man: %w", err)
	}
	for _, name := range pagedCommands() {
		c, _ := lookupCommand(name)
		b.Reset()
		if err := writeCommandPage(&b, c); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "sshvpn-"+name+".1"), b.Bytes(), 0o644); err != nil {
			return fmt.Errorf("man: %w", err)
		}
	}
	return nil
}

// pageHeader starts a page: the title line, then no hyphenation and a
// ragged right margin, so that a flag's name never breaks across lines.
func pageHeader(w io.Writer, title string) {
	bi, _ := debug.ReadBuildInfo()
	fmt.Fprintf(w, ".\\\" Made by \"sshvpn man\" from the flag definitions; change those, not this page.\n")
	fmt.Fprintf(w, ".TH %s 1 \"\" \"sshvpn %s\" \"sshvpn manual\"\n.nh\n.ad l\n", roff(strings.ToUpper(title)), roff(versionOf(bi, version)))
}

func writeMainPage(w io.Writer) error {
	pageHeader(w, "sshvpn")
	fmt.Fprintf(w, ".SH NAME\nsshvpn \\- turn any SSH connection into a VPN\n")
	fmt.Fprintf(w, ".SH SYNOPSIS\n.B sshvpn\n.I command\n[flags] [arguments]\n")
	fmt.Fprintf(w, ".SH DESCRIPTION\n%s\n", roff("sshvpn speaks OpenSSH's tunnel protocol (ssh -w, tun@openssh.com). "+
		"As a gateway it takes stock ssh clients' tunnels into a userspace network stack that needs no root, or into tun and tap devices; "+
		"as a client it opens a tunnel to a stock sshd with PermitTunnel, or to an sshvpn gateway, and keeps it up."))
	fmt.Fprintf(w, ".SH COMMANDS\n")
	for _, c := range commands() {
		usage, about := splitAbout(c.about)
		fmt.Fprintf(w, ".TP\n.B %s\n", roff(strings.TrimPrefix(usage, "sshvpn ")))
		first, _, _ := strings.Cut(about, "\n\n")
		fmt.Fprintln(w, roff(strings.Join(strings.Fields(first), " ")))
		if c.flags != nil && c.name != "man" {
			fmt.Fprintf(w, "See\n.BR sshvpn\\-%s (1).\n", roff(c.name))
		}
	}
	fmt.Fprintf(w, ".SH SYSTEMD\n%s\n", roff("sshvpn.service runs the rootless gateway as a dynamic user; sshvpn-kernel.service runs the kernel gateway with CAP_NET_ADMIN only; "+
		"sshvpn@NAME.service runs sshvpn connect with the arguments in /etc/sshvpn/NAME.conf. "+
		"The gateways and the client tell systemd when they are ready (Type=notify), what they carry (systemctl status), and keep its watchdog fed while their main loop answers; "+
		"systemctl reload re-reads the gateway's authorized_keys."))
	fmt.Fprintf(w, ".SH SEE ALSO\n")
	var refs []string
	for _, name := range pagedCommands() {
		refs = append(refs, ".BR sshvpn\\-"+roff(name)+" (1),")
	}
	refs = append(refs, ".BR ssh (1),", ".BR sshd_config (5)")
	fmt.Fprintln(w, strings.Join(refs, "\n"))
	return nil
}

func writeCommandPage(w io.Writer, c command) error {
	usage, about := splitAbout(c.about)
	pageHeader(w, "sshvpn-"+c.name)
	fmt.Fprintf(w, ".SH NAME\nsshvpn\\-%s \\- %s\n", roff(c.name), roff(c.summary))
	fmt.Fprintf(w, ".SH SYNOPSIS\n.B sshvpn %s\n%s\n", roff(c.name), roff(strings.TrimPrefix(usage, "sshvpn "+c.name+" ")))
	fmt.Fprintf(w, ".SH DESCRIPTION\n")
	writeParagraphs(w, about)
	fmt.Fprintf(w, ".SH OPTIONS\n")
	for _, f := range c.flagList() {
		writeFlag(w, f)
	}
	fmt.Fprintf(w, ".SH SEE ALSO\n.BR sshvpn (1)\n")
	return nil
}

// writeParagraphs writes -h's text as the page's: blank lines part
// paragraphs, whose lines are filled; indented lines (a table of
// columns) are kept as they are laid out.
func writeParagraphs(w io.Writer, text string) {
	for i, par := range strings.Split(strings.TrimSpace(text), "\n\n") {
		if i > 0 {
			fmt.Fprintln(w, ".PP")
		}
		table := false
		for _, l := range strings.Split(strings.Trim(par, "\n"), "\n") {
			if indented := strings.HasPrefix(l, " "); indented != table {
				table = indented
				fmt.Fprintln(w, map[bool]string{true: ".nf", false: ".fi"}[table])
			}
			fmt.Fprintln(w, roff(l))
		}
		if table {
			fmt.Fprintln(w, ".fi")
		}
	}
}

// writeFlag writes one flag as a tagged paragraph: its name in bold, its
// argument in italics, its usage and default below.
func writeFlag(w io.Writer, f *flag.Flag) {
	arg, usage := flag.UnquoteUsage(f)
	fmt.Fprintln(w, ".TP")
	if isBool(f) {
		fmt.Fprintf(w, ".B %s\n", roff(dashed(f.Name)))
	} else {
		fmt.Fprintf(w, ".BI %s \" %s\"\n", roff(dashed(f.Name)), roff(arg))
	}
	if cs := choices(f); len(cs) > 0 {
		usage += " (one of: " + strings.Join(cs, ", ") + ")"
	}
	if d := shownDefault(f); d != "" && !isBool(f) {
		usage += " (default: " + d + ")"
	}
	fmt.Fprintln(w, roff(usage))
}

// splitAbout splits a command's -h header into its usage line (without
// "Usage: ") and its description.
func splitAbout(about string) (usage, description string) {
	usage, description, _ = strings.Cut(about, "\n\n")
	return strings.TrimPrefix(usage, "Usage: "), description
}

// roff escapes text for man(7): a backslash is \e, every '-' is \- (a
// hyphen would let groff turn flags into typographic dashes), a double
// quote is \(dq so macro arguments stay whole, and a line may not start
// with a control character, a dot or an apostrophe.
func roff(s string) string {
	r := strings.NewReplacer(`\`, `\e`, "-", `\-`, `"`, `\(dq`)
	lines := strings.Split(r.Replace(s), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			lines[i] = `\&` + l
		}
	}
	return strings.Join(lines, "\n")
}
