package egress

import (
	"strings"
	"testing"
)

// FuzzParseRule checks that ParseRule never panics, that a rule it accepts
// prints back to text that parses to the same rule and prints the same, and
// that its errors name the rule.
func FuzzParseRule(f *testing.F) {
	for _, s := range []string{
		"198.18.0.0/15", "198.18.2.2", "[2001:2::1]:443", "2001:2::/48",
		"10.0.0.0/8:80-90/tcp", "0.0.0.0/0:53/udp", "::/0/icmp", "any:25/tcp",
		"[2001:db8::/32]:1-65535/udp", "::ffff:10.0.0.0/104", "fe80::1%eth0",
		"[10.0.0.1]:80", "10.0.0.1:90-80", "1.2.3.4:08", "[::1]", "ANY/ICMP",
		"64:ff9b::7f00:1", "1.2.3.4/", "[", "/tcp",
	} {
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, allow bool) {
		r, err := ParseRule(s, allow)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "rule ") {
				t.Errorf("ParseRule(%q) error %q does not name the rule", s, err)
			}
			return
		}
		if r.Allow != allow {
			t.Errorf("ParseRule(%q, %v).Allow = %v", s, allow, r.Allow)
		}
		text := r.String()
		back, err := ParseRule(text, allow)
		if err != nil {
			t.Fatalf("ParseRule(%q) = %+v, whose String %q does not parse: %v", s, r, text, err)
		}
		if back != r {
			t.Fatalf("ParseRule(%q) = %+v, String %q parses to %+v", s, r, text, back)
		}
		if back.String() != text {
			t.Fatalf("ParseRule(%q): String %q, then %q", s, text, back.String())
		}
		if r.Prefix.IsValid() && (r.Prefix != r.Prefix.Masked() || r.Prefix.Addr().Is4In6() || r.Prefix.Addr().Zone() != "") {
			t.Fatalf("ParseRule(%q) = prefix %s: want masked, unmapped, unzoned", s, r.Prefix)
		}
	})
}
