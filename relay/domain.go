package relay

import (
	"errors"
	"fmt"
	"strings"
)

// Limits on the name servers and DNS domains a client puts in its
// resolver, whoever names them (a gateway's tunnel config, a DHCP lease): a
// handful is normal, and each entry becomes a D-Bus argument or a line of
// /etc/resolv.conf.
const (
	MaxDNS     = 16 // name servers
	MaxDomains = 32 // DNS domains
)

// CheckDomain accepts a DNS domain as a gateway or a DHCP server names it: a name of
// dot-separated labels of letters, digits, '-' and '_' (service and
// reverse-lookup names use the last), without the root's trailing dot, at
// most 253 characters, each label at most 63 and not starting or ending
// with '-'. The root itself ("." for all names) is refused: whether every
// lookup goes through the tunnel is the client's to decide, from its
// routes.
func CheckDomain(d string) error {
	if d == "" || len(d) > 253 {
		return fmt.Errorf("DNS domain %q: want 1 to 253 characters", d)
	}
	for _, l := range strings.Split(d, ".") {
		if err := checkLabel(l); err != nil {
			return fmt.Errorf("DNS domain %q: %w", d, err)
		}
	}
	return nil
}

func checkLabel(l string) error {
	switch {
	case l == "":
		return errors.New("empty label (a leading, trailing or doubled dot)")
	case len(l) > 63:
		return fmt.Errorf("label %q is longer than 63 characters", l)
	case l[0] == '-' || l[len(l)-1] == '-':
		return fmt.Errorf("label %q starts or ends with '-'", l)
	}
	for _, r := range l {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
		if !ok {
			return fmt.Errorf("label %q holds %q: want letters, digits, '-' or '_'", l, r)
		}
	}
	return nil
}
