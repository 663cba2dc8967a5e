package egress

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Proto is the transport a rule or a flow is about.
type Proto uint8

const (
	ProtoAny  Proto = iota // a rule for every protocol
	ProtoTCP               // tcp
	ProtoUDP               // udp
	ProtoICMP              // icmp: ICMP echo over IPv4 and ICMPv6 echo over IPv6
)

func (p Proto) String() string {
	switch p {
	case ProtoAny:
		return "any"
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoICMP:
		return "icmp"
	}
	return "proto(" + strconv.Itoa(int(p)) + ")"
}

// hasPorts says whether flows of p carry ports a rule can match.
func (p Proto) hasPorts() bool { return p == ProtoTCP || p == ProtoUDP }

// PortRange is an inclusive range of ports. The zero PortRange means every
// port, which is why port 0 cannot be written in a rule.
type PortRange struct {
	First, Last uint16
}

// All says whether r is every port.
func (r PortRange) All() bool { return r == PortRange{} }

// Contains says whether port is in r.
func (r PortRange) Contains(port uint16) bool {
	return r.All() || (r.First <= port && port <= r.Last)
}

func (r PortRange) String() string {
	switch {
	case r.All():
		return "all"
	case r.First == r.Last:
		return strconv.Itoa(int(r.First))
	}
	return strconv.Itoa(int(r.First)) + "-" + strconv.Itoa(int(r.Last))
}

// Rule is one --allow or --deny rule. Its zero value denies everything.
type Rule struct {
	// Prefix is masked, never IPv4-mapped and never zoned. The zero Prefix
	// means any address, IPv4 or IPv6 (the rule "any").
	Prefix netip.Prefix
	Ports  PortRange // the zero PortRange is every port
	Proto  Proto
	Allow  bool
}

// matches says whether r covers a flow to addr:port over proto. addr is
// already unmapped and unzoned (Policy.Decide sees to it).
func (r *Rule) matches(addr netip.Addr, port uint16, proto Proto) bool {
	if r.Proto != ProtoAny && r.Proto != proto {
		return false
	}
	if !r.Ports.All() && (!proto.hasPorts() || !r.Ports.Contains(port)) {
		return false
	}
	return !r.Prefix.IsValid() || r.Prefix.Contains(addr)
}

// String gives the rule in the grammar ParseRule reads, without its verdict:
// ParseRule(r.String(), r.Allow) gives r back.
func (r Rule) String() string {
	var b strings.Builder
	p := r.Prefix
	switch {
	case !p.IsValid():
		b.WriteString("any")
	case p.Addr().Is6() && !r.Ports.All():
		b.WriteByte('[')
		writePrefix(&b, p)
		b.WriteByte(']')
	default:
		writePrefix(&b, p)
	}
	if !r.Ports.All() {
		b.WriteByte(':')
		b.WriteString(r.Ports.String())
	}
	if r.Proto != ProtoAny {
		b.WriteByte('/')
		b.WriteString(r.Proto.String())
	}
	return b.String()
}

// writePrefix writes a host prefix as its bare address.
func writePrefix(b *strings.Builder, p netip.Prefix) {
	if p.IsSingleIP() {
		b.WriteString(p.Addr().String())
		return
	}
	b.WriteString(p.String())
}

// ParseRules reads a comma-separated list of rules, as in
// environment="SSHVPN_ALLOW=rule,rule"; spaces around a rule are ignored.
func ParseRules(s string, allow bool) ([]Rule, error) {
	var rules []Rule
	for item := range strings.SplitSeq(s, ",") {
		r, err := ParseRule(strings.TrimSpace(item), allow)
		if err != nil {
			return nil, err
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// ParseRule reads one rule in the grammar of the package documentation.
// allow is the verdict: true for --allow and SSHVPN_ALLOW, false for the
// deny forms.
func ParseRule(s string, allow bool) (Rule, error) {
	r, err := parseRule(s)
	if err != nil {
		return Rule{}, fmt.Errorf("rule %q: %w", s, err)
	}
	r.Allow = allow
	return r, nil
}

func parseRule(s string) (Rule, error) {
	var r Rule
	if s == "" {
		return r, errors.New("empty rule (want an address, a CIDR prefix or any)")
	}
	rest, proto, err := cutProto(s)
	if err != nil {
		return r, err
	}
	target, ports, hasPorts, bracketed, err := cutPorts(rest)
	if err != nil {
		return r, err
	}
	if r.Prefix, err = parseTarget(target); err != nil {
		return r, err
	}
	if bracketed && !r.Prefix.Addr().Is6() {
		return r, fmt.Errorf("brackets are for IPv6 only: write %s without them", target)
	}
	if hasPorts {
		if proto == ProtoICMP {
			return r, errors.New("icmp has no ports: drop the :ports or the /icmp")
		}
		if r.Ports, err = parsePorts(ports); err != nil {
			return r, err
		}
	}
	r.Proto = proto
	return r, nil
}

// cutProto takes a trailing /tcp, /udp or /icmp off s. A prefix length also
// follows a slash, so only a suffix that starts with a letter is a protocol.
func cutProto(s string) (rest string, proto Proto, err error) {
	i := strings.LastIndexByte(s, '/')
	if i < 0 || i == len(s)-1 || !isLetter(s[i+1]) {
		return s, ProtoAny, nil
	}
	name := s[i+1:]
	for _, p := range []Proto{ProtoTCP, ProtoUDP, ProtoICMP} {
		if strings.EqualFold(name, p.String()) {
			return s[:i], p, nil
		}
	}
	return "", 0, fmt.Errorf("unknown protocol %q (want tcp, udp or icmp, or none for all three)", name)
}

func isLetter(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }

// cutPorts splits target:ports. IPv6 targets take ports only in brackets,
// because 2001:db8::1:443 is itself an address.
func cutPorts(s string) (target, ports string, hasPorts, bracketed bool, err error) {
	if !strings.HasPrefix(s, "[") {
		if strings.Count(s, ":") == 1 {
			target, ports, _ = strings.Cut(s, ":")
			return target, ports, true, false, nil
		}
		return s, "", false, false, nil
	}
	end := strings.IndexByte(s, ']')
	if end < 0 {
		return "", "", false, true, errors.New("missing ] after the IPv6 address")
	}
	target, after := s[1:end], s[end+1:]
	switch {
	case after == "":
		return target, "", false, true, nil
	case after[0] == ':':
		return target, after[1:], true, true, nil
	case after[0] == '/':
		return "", "", false, true, errors.New("the prefix length goes inside the brackets, as in [2001:db8::/32]:443")
	}
	return "", "", false, true, fmt.Errorf("unexpected %q after ] (want :ports)", after)
}

// parseTarget reads any, an address or a CIDR prefix. It parses the parts
// itself so that errors speak of the rule, not of Go's parser.
func parseTarget(s string) (netip.Prefix, error) {
	if strings.EqualFold(s, "any") {
		return netip.Prefix{}, nil
	}
	if strings.IndexByte(s, '%') >= 0 {
		return netip.Prefix{}, fmt.Errorf("%q has a zone: rules take addresses without %%interface", s)
	}
	addrText, bitsText, hasBits := strings.Cut(s, "/")
	addr, err := netip.ParseAddr(addrText)
	if err != nil {
		return netip.Prefix{}, notAnAddress(addrText)
	}
	bits := addr.BitLen()
	if hasBits {
		if bits, err = parseBits(bitsText, addr.BitLen()); err != nil {
			if addr.Is6() && strings.Contains(bitsText, ":") {
				err = fmt.Errorf("%w (ports on IPv6 go after brackets, as in [2001:db8::/32]:443)", err)
			}
			return netip.Prefix{}, err
		}
	}
	p := netip.PrefixFrom(addr, bits).Masked()
	if p.Addr().Is4In6() {
		v4 := netip.PrefixFrom(p.Addr().Unmap(), bits-96)
		return netip.Prefix{}, fmt.Errorf("%s is IPv4-mapped: write it as %s (IPv4-mapped destinations are judged as IPv4)", s, v4)
	}
	return p, nil
}

func notAnAddress(s string) error {
	if strings.Count(s, ":") >= 2 {
		return fmt.Errorf("%q is not an IPv6 address (ports on IPv6 go after brackets, as in [2001:db8::1]:443)", s)
	}
	return fmt.Errorf("%q is not an IP address (want an address, a CIDR prefix or any)", s)
}

func parseBits(s string, max int) (int, error) {
	n, ok := parseDecimal(s, max)
	if !ok {
		return 0, fmt.Errorf("prefix length %q is not a number from 0 to %d", s, max)
	}
	return n, nil
}

// parsePorts reads N or N-M, each from 1 to 65535.
func parsePorts(s string) (PortRange, error) {
	firstText, lastText, isRange := strings.Cut(s, "-")
	first, ok := parseDecimal(firstText, 65535)
	if !ok || first == 0 {
		return PortRange{}, fmt.Errorf("port %q is not a number from 1 to 65535", firstText)
	}
	last := first
	if isRange {
		if last, ok = parseDecimal(lastText, 65535); !ok || last == 0 {
			return PortRange{}, fmt.Errorf("port %q is not a number from 1 to 65535", lastText)
		}
		if last < first {
			return PortRange{}, fmt.Errorf("port range %s is backwards (want low-high)", s)
		}
	}
	return PortRange{uint16(first), uint16(last)}, nil
}

// parseDecimal reads plain digits (no sign, at most five) up to max.
func parseDecimal(s string, max int) (int, bool) {
	if s == "" || len(s) > 5 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, n <= max
}
