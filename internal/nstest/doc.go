// Package nstest gives integration tests real hosts: Linux network namespaces
// joined by veth pairs, processes started inside them, sockets opened from them,
// byte-exact bulk transfers between them, and real OpenSSH peers (Debian's 9.2
// and the 10.0 that .ci/openssh10 unpacks beside it).
//
// Everything a test creates is removed in t.Cleanup, also when the test fails:
// processes are killed by PID (SIGKILL, then reaped) and namespaces deleted.
// Namespace names are "sshvpn-<pid>-<n>", so parallel test binaries never
// collide and a leftover names the process that leaked it (see Leftovers).
//
// Tests use only 198.18.0.0/15 and 2001:2::/48 inside namespaces they made,
// plus loopback: the benchmarking ranges (RFC 2544, RFC 5180), which no
// real network uses.
//
// Most helpers need root; call RequireRoot first. Under CI=true a missing
// privilege or tool fails the test, elsewhere it skips with the reason.
package nstest
