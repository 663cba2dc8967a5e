//go:build !linux

package kernel

import "time"

// leaseKeeper is the DHCP client, which runs on Linux only.
type leaseKeeper struct{}

func (l *Local) startDHCP() error { return unsupported("DHCP on " + l.Name()) }

func (k *leaseKeeper) close() {}

// Leave does nothing: there is no DHCP client here.
func (l *Local) Leave(timeout time.Duration) {}
