//go:build !linux

package sdnotify

import "errors"

// monotonicUsec: only Linux has a service manager that asks for it.
func monotonicUsec() (uint64, error) { return 0, errNoClock }

// errNoClock is monotonicUsec's answer where the OS gives no
// CLOCK_MONOTONIC reading to compare with the manager's.
var errNoClock = errors.New("no CLOCK_MONOTONIC on this system")
