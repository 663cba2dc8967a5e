package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// completionAbout heads completion's -h and its entry in sshvpn(1).
const completionAbout = "Usage: sshvpn completion bash|zsh\n\n" +
	"Writes the shell's completion script for sshvpn to stdout: its commands, each command's flags, " +
	"files and directories where a flag takes one, and hosts for connect. " +
	"Load it with: source <(sshvpn completion bash), or install it where the shell looks (make install does)."

// completion is the completion command.
func completion(args []string, stdout io.Writer) error {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		fmt.Fprintln(stdout, completionAbout)
		return flag.ErrHelp
	}
	if len(args) != 1 {
		return fmt.Errorf("completion takes one shell, bash or zsh; got %d arguments", len(args))
	}
	switch args[0] {
	case "bash":
		writeBash(stdout)
	case "zsh":
		writeZsh(stdout)
	default:
		return fmt.Errorf("completion: no script for %q: want bash or zsh", args[0])
	}
	return nil
}

// flagWords sorts a command's flags for a completion script: every flag
// as typed (--listen, -p), and the names (without dashes) of those that
// take a file, a directory, any other value, or one of a few words.
type flagWords struct {
	all, files, dirs, valued []string
	choices                  map[string][]string
}

func wordsOf(c command) flagWords {
	w := flagWords{choices: map[string][]string{}}
	for _, f := range c.flagList() {
		w.all = append(w.all, dashed(f.Name))
		switch {
		case isBool(f):
		case argKind(f) == "file":
			w.files = append(w.files, f.Name)
		case argKind(f) == "directory":
			w.dirs = append(w.dirs, f.Name)
		default:
			w.valued = append(w.valued, f.Name)
			if cs := choices(f); cs != nil {
				w.choices[f.Name] = cs
			}
		}
	}
	return w
}

// commandNames are every command's name and help: for the completions and
// the suggestion after a mistyped command.
func commandNames() []string {
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	return append(names, "help")
}

// writeBash writes a bash completion script. It needs nothing from the
// bash-completion package, so it also works sourced by hand.
func writeBash(w io.Writer) {
	fmt.Fprintf(w, `# bash completion for sshvpn; made by "sshvpn completion bash" from the flag definitions.
_sshvpn() {
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
	COMPREPLY=()
	if ((COMP_CWORD == 1)); then
		COMPREPLY=($(compgen -W %q -- "$cur"))
		return
	fi
	local flags= files= dirs= valued= operands=
	case ${COMP_WORDS[1]} in
`, strings.Join(commandNames(), " "))
	for _, c := range commands() {
		fw := wordsOf(c)
		fmt.Fprintf(w, "\t%s)\n\t\tflags=%q files=%q dirs=%q valued=%q operands=%q\n", c.name,
			strings.Join(fw.all, " "), " "+strings.Join(fw.files, " ")+" ", " "+strings.Join(fw.dirs, " ")+" ",
			" "+strings.Join(fw.valued, " ")+" ", c.operands)
		if len(fw.choices) > 0 {
			fmt.Fprintf(w, "\t\tcase ${prev##*-} in\n")
			for _, name := range fw.valued {
				if cs := fw.choices[name]; cs != nil {
					fmt.Fprintf(w, "\t\t%s) [[ $prev == -*%s ]] && { COMPREPLY=($(compgen -W %q -- \"$cur\")); return; } ;;\n", name, name, strings.Join(cs, " "))
				}
			}
			fmt.Fprintf(w, "\t\tesac\n")
		}
		fmt.Fprintf(w, "\t\t;;\n")
	}
	fmt.Fprint(w, `	*) return ;;
	esac
	if [[ $prev == -* ]]; then
		# The flag package takes -name and --name alike.
		local name=${prev#-}
		name=${name#-}
		if [[ $files == *" $name "* ]]; then
			COMPREPLY=($(compgen -f -- "$cur"))
			return
		elif [[ $dirs == *" $name "* ]]; then
			COMPREPLY=($(compgen -d -- "$cur"))
			return
		elif [[ $valued == *" $name "* ]]; then
			return
		fi
	fi
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$flags" -- "$cur"))
	elif [[ $operands == host ]]; then
		COMPREPLY=($(compgen -A hostname -- "$cur"))
	elif [[ -n $operands ]]; then
		COMPREPLY=($(compgen -W "$operands" -- "$cur"))
	fi
}
complete -o default -o bashdefault -F _sshvpn sshvpn 2>/dev/null || complete -F _sshvpn sshvpn
`)
}

// writeZsh writes a zsh completion function, for a directory in $fpath
// as _sshvpn.
func writeZsh(w io.Writer) {
	fmt.Fprint(w, `#compdef sshvpn
# zsh completion for sshvpn; made by "sshvpn completion zsh" from the flag definitions.
_sshvpn() {
	if (( CURRENT == 2 )); then
		local -a cmds
		cmds=(
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "\t\t\t%s\n", zshQuote(c.name+":"+c.summary))
	}
	fmt.Fprint(w, `		)
		_describe -t commands 'sshvpn command' cmds
		return
	fi
	local cmd=${words[2]}
	shift words
	(( CURRENT-- ))
	case $cmd in
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "\t%s)\n\t\t_arguments -S", c.name)
		for _, f := range c.flagList() {
			fmt.Fprintf(w, " \\\n\t\t\t%s", zshQuote(zshSpec(f)))
		}
		switch c.operands {
		case "":
		case "host":
			fmt.Fprintf(w, " \\\n\t\t\t':destination:_hosts'")
		default:
			fmt.Fprintf(w, " \\\n\t\t\t%s", zshQuote(":"+c.name+":("+c.operands+")"))
		}
		fmt.Fprint(w, "\n\t\t;;\n")
	}
	fmt.Fprint(w, `	esac
}
_sshvpn "$@"
`)
}

// zshSpec is one flag as _arguments reads it: --name=[what]:arg:action,
// repeatable (a leading *) where the flag may be given more than once.
func zshSpec(f *flag.Flag) string {
	arg, usage := flag.UnquoteUsage(f)
	desc := "[" + zshEscape(firstClause(usage)) + "]"
	name := dashed(f.Name)
	if isBool(f) {
		return name + desc
	}
	action := ""
	switch {
	case argKind(f) == "file":
		action = "_files"
	case argKind(f) == "directory":
		action = "_files -/"
	case choices(f) != nil:
		action = "(" + strings.Join(choices(f), " ") + ")"
	}
	spec := name + "=" + desc + ":" + zshEscape(arg) + ":" + action
	if strings.Contains(usage, "repeatable") {
		spec = "*" + spec
	}
	return spec
}

// firstClause shortens a usage to what fits a menu line.
func firstClause(s string) string {
	if i := strings.IndexAny(s, ";("); i > 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// zshEscape escapes what _arguments gives meaning to inside a spec.
func zshEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, "[", `\[`, "]", `\]`, ":", `\:`).Replace(s)
}

// zshQuote single-quotes s for zsh.
func zshQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
