//go:build !linux

package kernel

// netnsID is empty where there are no network namespaces.
func netnsID() (string, error) { return "", nil }
