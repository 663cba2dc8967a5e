// Package sdnotify tells a service manager how the service is doing, with
// systemd's notify protocol: one datagram of NAME=value lines per message,
// sent to the unix socket $NOTIFY_SOCKET names (a path, or an abstract
// socket written with a leading "@"). Where the variable is unset the
// process was not started as a Type=notify service, and every call does
// nothing, so callers need no branch.
//
//   - notify.go: Notifier and the messages: READY=1, STATUS=, RELOADING=1
//     with MONOTONIC_USEC, STOPPING=1.
//   - watchdog.go: the WATCHDOG=1 loop, sent only while a liveness check
//     of the caller's main loop passes.
//   - monotonic_*.go: CLOCK_MONOTONIC, which RELOADING=1 must carry.
//
// The standard library and, for the one clock reading it lacks,
// golang.org/x/sys/unix: the protocol is small and stable, and needs no
// systemd library (and no unsafe of our own).
package sdnotify
