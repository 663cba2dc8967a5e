// Package sshclient is the SSH plumbing of sshvpn's client: it resolves
// options the way OpenSSH's ssh(1) does and dials an authenticated
// *ssh.Client with them.
//
// The package is split by concept:
//
//   - options.go: Options (the ssh-like flags) and Config (the resolved result),
//     Resolve and the defaults.
//   - configfile.go: the ssh_config(5) line tokenizer and Include.
//   - match.go: Host and Match evaluation and OpenSSH's pattern matching.
//   - keywords.go: the keywords sshvpn understands, their validation and the
//     first-obtained-value-wins rule.
//   - expand.go: %-tokens, ~, time intervals, destinations and TunnelDevice.
//   - dial.go: Dialer, TCP and ProxyJump connection setup.
//   - auth.go: ssh-agent and identity files, with lazy passphrase prompts.
//   - hostkey.go: known_hosts and StrictHostKeyChecking, with OpenSSH's texts.
//   - prompt.go: the terminal prompts.
//
// Resolution follows ssh_config(5) and, where the manual is silent,
// openssh-portable's readconf.c and ssh.c: the command line first, then the
// user file, then the system file; the first value obtained for a keyword
// wins, except IdentityFile, which accumulates. ssh -G is the oracle in the
// tests. Differences from OpenSSH are listed where they are implemented;
// the important ones: Match exec is never run (the block does not match and
// a note says so), keywords sshvpn does not use are ignored with a note
// instead of failing, and a changed host key always aborts, whatever
// StrictHostKeyChecking says.
package sshclient
