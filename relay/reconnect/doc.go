// Package reconnect is the client's supervisor: Client keeps one tunnel up
// across lost connections, dialling again with backoff, while the local
// device stays in place and one Pump reads it for the whole run; each SSH
// session only attaches its channel to the remote side (remote.go). Probe
// (probe.go) asks the supervising goroutine itself to answer, for a
// service manager's watchdog.
package reconnect
