//go:build !linux

package kernel

// Elsewhere the tunnel's device cannot be opened, so nothing reaches these.

func (u *undoLog) setLinkDNS(dev string, p dnsPlan) error {
	return unsupported("name servers for " + dev)
}

func (u *undoLog) writeResolvConf(dev string, content []byte) error {
	return unsupported("write " + resolvConfPath)
}
