package wire

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/sshvpn/sshvpn/relay"
)

// Name servers and domains travel to the client and back unchanged.
func TestTunnelConfigDomains(t *testing.T) {
	c := relay.TunnelConfig{Device: "tun3", MTU: 1400,
		DNS:     []netip.Addr{netip.MustParseAddr("198.18.3.1"), netip.MustParseAddr("2001:2:0:3::1")},
		Domains: []string{"corp.example", "3.18.198.in-addr.arpa", "_tcp.Lab-1.example"}}
	p := MarshalTunnelConfig(c)
	if !strings.Contains(string(p), `"domains":["corp.example","3.18.198.in-addr.arpa","_tcp.Lab-1.example"]`) {
		t.Errorf("domains not in the JSON as expected: %s", p[4:])
	}
	got, err := ParseTunnelConfig(p)
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("ParseTunnelConfig = %+v, %v; want %+v", got, err, c)
	}
}

// What a client could not put in its resolver as it is, it refuses whole.
func TestTunnelConfigNamesRefused(t *testing.T) {
	many := func(n int, s string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = s
		}
		return out
	}
	for _, tc := range []struct {
		name, js, want string
	}{
		{"root", `{"domains":["."]}`, "empty label"},
		{"trailing dot", `{"domains":["corp.example."]}`, "empty label"},
		{"double dot", `{"domains":["corp..example"]}`, "empty label"},
		{"empty", `{"domains":[""]}`, "1 to 253"},
		{"routing-only marker", `{"domains":["~corp.example"]}`, `holds '~'`},
		{"space", `{"domains":["corp example"]}`, `holds ' '`},
		{"newline", `{"domains":["corp\nnameserver 198.18.9.9"]}`, `holds '\n'`},
		{"hyphen", `{"domains":["-corp.example"]}`, "starts or ends with '-'"},
		{"long label", `{"domains":["` + strings.Repeat("a", 64) + `.example"]}`, "longer than 63"},
		{"long name", `{"domains":["` + strings.Repeat("abcdefg.", 32) + `ab"]}`, "1 to 253"},
		{"too many", `{"domains":["` + strings.Join(many(MaxDomains+1, "a.example"), `","`) + `"]}`, "more than 32"},
		{"unspecified server", `{"dns":["0.0.0.0"]}`, "want a unicast address"},
		{"zoned server", `{"dns":["fe80::1%eth0"]}`, "without a zone"},
		{"empty server", `{"dns":[""]}`, "want a unicast address"},
		{"too many servers", `{"dns":["` + strings.Join(many(MaxDNS+1, "198.18.3.1"), `","`) + `"]}`, "more than 16"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			payload := append([]byte{0, 0, 0, byte(len(tc.js))}, tc.js...)
			if len(tc.js) > 255 {
				payload = append([]byte{0, 0, byte(len(tc.js) >> 8), byte(len(tc.js))}, tc.js...)
			}
			c, err := ParseTunnelConfig(payload)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseTunnelConfig(%s) = %+v, %v; want an error containing %q", tc.js, c, err, tc.want)
			}
		})
	}
}

func TestCheckDomainAccepts(t *testing.T) {
	for _, d := range []string{"example", "corp.example", "a-b.example", "_ldap._tcp.example", strings.Repeat("a", 63) + ".example",
		strings.Repeat("abcdefg.", 31) + "abcde"} {
		if err := CheckDomain(d); err != nil {
			t.Errorf("CheckDomain(%q): %v", d, err)
		}
	}
}
