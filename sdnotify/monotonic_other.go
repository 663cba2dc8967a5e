//go:build !linux

package sdnotify

// monotonicUsec: only Linux has a service manager that asks for it.
func monotonicUsec() (uint64, error) { return 0, errNoClock }
