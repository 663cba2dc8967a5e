// Package sshclient is the SSH plumbing of sshvpn's client: it resolves
// options the way OpenSSH's ssh(1) does and dials an authenticated
// *ssh.Client with them.
//
// The package is split by concept:
//
//   - options.go: Options (the ssh-like flags) and Config (the resolved result),
//     Resolve and the defaults.
//   - argv.go: ssh's command line: Getopt's forms, the letters taken,
//     ignored and refused, and KeywordFlags (-l for User, …).
//   - configfile.go: the ssh_config(5) line tokenizer and Include.
//   - match.go: Host and Match evaluation and OpenSSH's pattern matching.
//   - keywords.go: the keywords sshvpn understands, their validation and the
//     first-obtained-value-wins rule.
//   - expand.go: %-tokens, ~, time intervals, destinations and TunnelDevice.
//   - dial.go: Dialer, the handshake and ProxyJump connection setup.
//   - names.go: the TCP connect, with the last addresses of a name kept
//     for when its name servers are behind a tunnel that is down.
//   - quickack_linux.go: quick ACKs toward a stock sshd, whose Nagle
//     otherwise holds its replies for our delayed ACK.
//   - dialerror.go: ConnectTimeout over the whole handshake, and failures
//     in ssh's words.
//   - auth.go: ssh-agent and identity files, with lazy passphrase prompts.
//   - knownhosts.go: the known_hosts reader and matcher (hostfile.c, match.c).
//   - hostkey.go: check_host_key: StrictHostKeyChecking and host
//     certificates, with OpenSSH's texts.
//   - prompt.go: the terminal prompts, which an interrupt ends.
//
// Resolution follows ssh_config(5) and, where the manual is silent,
// openssh-portable's readconf.c and ssh.c: the command line first, then the
// user file, then the system file; the first value obtained for a keyword
// wins, except IdentityFile, which accumulates. ssh -G is the oracle in the
// tests. Differences from OpenSSH are listed where they are implemented;
// the important ones: an unknown keyword warns instead of failing,
// ProxyCommand is refused, and a changed or revoked host key always
// aborts, whatever StrictHostKeyChecking says.
package sshclient
