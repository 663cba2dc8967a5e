package egress

import (
	"flag"
	"io"
	"net/netip"
	"strings"
	"testing"
)

func TestParseRule(t *testing.T) {
	pfx := netip.MustParsePrefix
	tests := []struct {
		in   string
		want Rule
		str  string // String(); "" for in
	}{
		{"198.18.0.0/15", Rule{Prefix: pfx("198.18.0.0/15")}, ""},
		{"198.18.2.2", Rule{Prefix: pfx("198.18.2.2/32")}, ""},
		{"198.18.2.2/32", Rule{Prefix: pfx("198.18.2.2/32")}, "198.18.2.2"},
		{"10.1.2.3/8", Rule{Prefix: pfx("10.0.0.0/8")}, "10.0.0.0/8"},
		{"[2001:2::1]:443", Rule{Prefix: pfx("2001:2::1/128"), Ports: PortRange{443, 443}}, ""},
		{"[2001:2::/48]:80-90/tcp", Rule{Prefix: pfx("2001:2::/48"), Ports: PortRange{80, 90}, Proto: ProtoTCP}, ""},
		{"2001:2::/48", Rule{Prefix: pfx("2001:2::/48")}, ""},
		{"2001:2::1", Rule{Prefix: pfx("2001:2::1/128")}, ""},
		{"[2001:2::1]", Rule{Prefix: pfx("2001:2::1/128")}, "2001:2::1"},
		{"10.0.0.0/8:80-90/tcp", Rule{Prefix: pfx("10.0.0.0/8"), Ports: PortRange{80, 90}, Proto: ProtoTCP}, ""},
		{"0.0.0.0/0:53/udp", Rule{Prefix: pfx("0.0.0.0/0"), Ports: PortRange{53, 53}, Proto: ProtoUDP}, ""},
		{"::/0/icmp", Rule{Prefix: pfx("::/0"), Proto: ProtoICMP}, ""},
		{"::1/tcp", Rule{Prefix: pfx("::1/128"), Proto: ProtoTCP}, ""},
		{"127.0.0.1:8080/TCP", Rule{Prefix: pfx("127.0.0.1/32"), Ports: PortRange{8080, 8080}, Proto: ProtoTCP}, "127.0.0.1:8080/tcp"},
		{"any", Rule{}, ""},
		{"ANY:25/tcp", Rule{Ports: PortRange{25, 25}, Proto: ProtoTCP}, "any:25/tcp"},
		{"any/icmp", Rule{Proto: ProtoICMP}, ""},
		{"1.2.3.4:1-65535", Rule{Prefix: pfx("1.2.3.4/32"), Ports: PortRange{1, 65535}}, ""},
		{"1.2.3.4:08", Rule{Prefix: pfx("1.2.3.4/32"), Ports: PortRange{8, 8}}, "1.2.3.4:8"},
	}
	for _, tt := range tests {
		for _, allow := range []bool{false, true} {
			got, err := ParseRule(tt.in, allow)
			if err != nil {
				t.Errorf("ParseRule(%q): %v", tt.in, err)
				continue
			}
			want := tt.want
			want.Allow = allow
			if got != want {
				t.Errorf("ParseRule(%q, %v) = %+v, want %+v", tt.in, allow, got, want)
			}
			str := tt.str
			if str == "" {
				str = tt.in
			}
			if got.String() != str {
				t.Errorf("ParseRule(%q).String() = %q, want %q", tt.in, got.String(), str)
			}
		}
	}
}

func TestParseRuleErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "empty rule"},
		{"example.com", `"example.com" is not an IP address`},
		{"10.0.0.0/33", `prefix length "33" is not a number from 0 to 32`},
		{"2001:db8::/129", `prefix length "129" is not a number from 0 to 128`},
		{"10.0.0.0/-1", `prefix length "-1"`},
		{"10.0.0.0/+8", `prefix length "+8"`},
		{"10.0.0.0/", `prefix length ""`},
		{"10.0.0.0/8/sctp", `unknown protocol "sctp"`},
		{"10.0.0.1:0", `port "0" is not a number from 1 to 65535`},
		{"10.0.0.1:65536", `port "65536"`},
		{"10.0.0.1:", `port ""`},
		{"10.0.0.1:90-80", "port range 90-80 is backwards"},
		{"10.0.0.1:80-", `port ""`},
		{"10.0.0.1:http", `port "http"`},
		{"10.0.0.1:53/icmp", "icmp has no ports"},
		{"2001:db8::/32:443", "ports on IPv6 go after brackets"},
		{"[2001:db8::]/32:443", "the prefix length goes inside the brackets"},
		{"[2001:db8::1", "missing ]"},
		{"[2001:db8::1]443", `unexpected "443" after ]`},
		{"[10.0.0.1]:80", "brackets are for IPv6 only"},
		{"[any]:80", "brackets are for IPv6 only"},
		{"fe80::1%eth0", "has a zone"},
		{"[fe80::1%eth0]:22", "has a zone"},
		{"::ffff:127.0.0.1", "IPv4-mapped: write it as 127.0.0.1/32"},
		{"::ffff:10.0.0.0/104", "IPv4-mapped: write it as 10.0.0.0/8"},
		{"::ffff:0:0/96", "IPv4-mapped: write it as 0.0.0.0/0"},
		{" 10.0.0.1", "is not an IP address"},
	}
	for _, tt := range tests {
		_, err := ParseRule(tt.in, true)
		if err == nil {
			t.Errorf("ParseRule(%q) succeeded, want an error containing %q", tt.in, tt.want)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, tt.want) {
			t.Errorf("ParseRule(%q) = %q, want it to contain %q", tt.in, msg, tt.want)
		}
		// Errors speak of the rule, not of Go's parsers.
		if !strings.HasPrefix(msg, "rule "+quote(tt.in)+": ") || strings.Contains(msg, "netip") || strings.Contains(msg, "Parse") {
			t.Errorf("ParseRule(%q) = %q: want it to start with the rule and name no Go internals", tt.in, msg)
		}
	}
}

func quote(s string) string { return `"` + s + `"` }

func TestParseRules(t *testing.T) {
	got, err := ParseRules("10.0.0.0/8:22/tcp, [2001:db8::1]:443 ,any/icmp", true)
	if err != nil {
		t.Fatal(err)
	}
	var strs []string
	for _, r := range got {
		if !r.Allow {
			t.Errorf("%s: Allow false", r)
		}
		strs = append(strs, r.String())
	}
	if s := strings.Join(strs, ","); s != "10.0.0.0/8:22/tcp,[2001:db8::1]:443,any/icmp" {
		t.Errorf("ParseRules = %s", s)
	}
	if _, err := ParseRules("10.0.0.0/8,,1.2.3.4", false); err == nil || !strings.Contains(err.Error(), "empty rule") {
		t.Errorf("ParseRules with an empty item: err = %v, want empty rule", err)
	}
}

// TestRulesFlag checks that --allow and --deny feed one list in
// command-line order, which first-match depends on.
func TestRulesFlag(t *testing.T) {
	var rules Rules
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Var(rules.Flag(true), "allow", "allow `rule`")
	fs.Var(rules.Flag(false), "deny", "deny `rule`")
	err := fs.Parse([]string{"--allow", "10.1.0.0/16", "--deny", "10.0.0.0/8", "--allow", "127.0.0.1:80/tcp"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"allow 10.1.0.0/16", "deny 10.0.0.0/8", "allow 127.0.0.1:80/tcp"}
	if len(rules) != len(want) {
		t.Fatalf("rules = %v, want %v", rules, want)
	}
	for i, r := range rules {
		got := map[bool]string{true: "allow ", false: "deny "}[r.Allow] + r.String()
		if got != want[i] {
			t.Errorf("rule %d = %s, want %s", i, got, want[i])
		}
	}
	if s := fs.Lookup("allow").Value.String(); s != "10.1.0.0/16,127.0.0.1:80/tcp" {
		t.Errorf("--allow String = %q", s)
	}
	if err := fs.Parse([]string{"--deny", "10.0.0.0/8:0"}); err == nil || !strings.Contains(err.Error(), `rule "10.0.0.0/8:0": port "0"`) {
		t.Errorf("bad --deny: err = %v", err)
	}
	fs.PrintDefaults() // calls String on a zero Value: must not panic
}
