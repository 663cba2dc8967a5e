package sshclient

import (
	"fmt"
	"strings"
)

// ssh's command line, as ssh(1) parses it: the letters that take a value,
// those a tunnel has no use for, those sshvpn refuses, and the getopt forms
// the flag package does not know. The flags themselves are the caller's to
// define; KeywordFlags are those that stand for an ssh_config keyword.

// KeywordFlags are ssh's one-letter flags that stand for an ssh_config
// keyword, as -l stands for User: each use is the -o Keyword=value it
// means, in command-line order, so the first one given wins as in ssh.
var KeywordFlags = []struct {
	Letter  byte
	Keyword string
	Usage   string
}{
	{'l', "User", "`user` to log in as (as ssh -l)"},
	{'c', "Ciphers", "`ciphers` (as ssh -c)"},
	{'m', "MACs", "`MACs` (as ssh -m)"},
	{'b', "BindAddress", "`address` to connect from (as ssh -b)"},
	{'B', "BindInterface", "`interface` to connect from (as ssh -B)"},
	{'P', "Tag", "`tag` for Match tagged (as ssh -P)"},
}

// ssh's one-letter options, as sshvpn connect treats them. Those it takes
// are flags of its set; ignored ones change nothing a tunnel needs (agent
// or X11 forwarding, a tty, the escape character); refused ones would do
// something sshvpn does not, and say what to use.
var (
	sshWithArg = "BbcDEeFIiJLlmOoPpQRSWw"
	sshIgnored = map[byte]string{
		'A': "agent forwarding", 'a': "no agent forwarding", 'X': "X11 forwarding", 'x': "no X11 forwarding",
		'Y': "trusted X11 forwarding", 'K': "GSSAPI", 'k': "no GSSAPI delegation",
		'n': "stdin from /dev/null", 't': "a tty", 'y': "syslog", 'e': "the escape character",
	}
	sshRefused = map[byte]string{
		'C': "sshvpn does not compress (x/crypto/ssh has no zlib, and a VPN's traffic is mostly compressed or encrypted already): drop -C",
		'R': "sshvpn forwards no remote ports: run ssh -R beside it",
		'W': "sshvpn carries a tunnel, not stdio forwards: use ssh -W",
		's': "sshvpn runs no subsystem",
		'G': "to see the configuration, run ssh -G",
		'M': "sshvpn is not a ControlMaster",
		'O': "sshvpn is not a ControlMaster",
		'S': "sshvpn is not a ControlMaster",
		'Q': "to list algorithms, run ssh -Q",
		'I': "PKCS#11 keys are not supported: load them into ssh-agent (ssh-add -s)",
	}
)

// Getopt rewrites ssh's getopt forms into the flag package's: glued
// values (-p2222, -wany:0, -oKey=Value) and clusters (-NT, -vvv, -fN) become
// one flag per argument. Long flags, with one dash or two, pass unchanged.
func Getopt(args []string, long func(name string) bool) ([]string, error) {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...), nil
		}
		if len(a) < 2 || a[0] != '-' || a[1] == '-' {
			out = append(out, a)
			continue
		}
		if name, _, _ := strings.Cut(a[1:], "="); long(name) && len(name) > 1 {
			out = append(out, a)
			continue
		}
		for j := 1; j < len(a); j++ {
			o := a[j]
			switch {
			case o == 'h':
				out = append(out, "-h")
			case sshRefused[o] != "":
				return nil, fmt.Errorf("-%c: %s", o, sshRefused[o])
			case sshIgnored[o] != "" && !strings.ContainsRune(sshWithArg, rune(o)):
				// A tunnel needs none of it: accepted, as ssh accepts it.
			case strings.ContainsRune(sshWithArg, rune(o)):
				val := a[j+1:]
				if val == "" {
					if i+1 >= len(args) {
						return nil, fmt.Errorf("option -%c needs an argument", o)
					}
					i++
					val = args[i]
				}
				if o != 'e' {
					out = append(out, "-"+string(o), val)
				}
				j = len(a)
			case strings.ContainsRune("46fgNTqvV", rune(o)):
				out = append(out, "-"+string(o))
			default:
				return nil, fmt.Errorf("unknown option -%c (sshvpn connect -h lists the flags)", o)
			}
		}
	}
	return out, nil
}
