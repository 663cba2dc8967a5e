package gateway

import (
	"slices"
	"strings"
	"testing"

	"github.com/sshvpn/sshvpn/relay"
)

// The key's own egress rules and sshd's forwarding options, as written.
func TestKeyForwardingOptions(t *testing.T) {
	o, err := parseKeyOptions("k:1", []string{
		`environment="SSHVPN_ALLOW=198.18.2.0/24:80/tcp, 198.18.4.1"`, `environment="SSHVPN_DENY=any"`,
		`permitopen="198.18.2.2:80"`, `permitopen="*:443"`, `permitopen="gw.example:22"`,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []relay.KeyRule{{Allow: true, Rule: "198.18.2.0/24:80/tcp"}, {Allow: true, Rule: "198.18.4.1"}, {Allow: false, Rule: "any"}}
	if !slices.Equal(o.KeyRules, want) {
		t.Fatalf("rules %v, want %v", o.KeyRules, want)
	}
	for _, tt := range []struct {
		host string
		port uint16
		ok   bool
	}{{"198.18.2.2", 80, true}, {"198.18.2.2", 81, false}, {"anything", 443, true}, {"198.18.2.3", 80, false},
		// Byte for byte, as sshd compares them.
		{"gw.example", 22, true}, {"GW.example", 22, false}} {
		if got := o.PermitsOpen(tt.host, tt.port); got != tt.ok {
			t.Errorf("permitopen %s:%d = %v, want %v", tt.host, tt.port, got, tt.ok)
		}
	}
	for opts, forwarding := range map[string]bool{"restrict": false, "no-port-forwarding": false, "restrict,port-forwarding": true, "no-pty": true} {
		o, err := parseKeyOptions("k:1", strings.Split(opts, ","))
		if err != nil || o.NoPortForwarding == forwarding {
			t.Errorf("%s: forwarding refused=%v (%v), want %v", opts, o.NoPortForwarding, err, !forwarding)
		}
	}
	for _, bad := range []string{`permitopen="nohost"`, `permitopen="h:0"`, `environment="SSHVPN_ALLOW="`} {
		if _, err := parseKeyOptions("k:1", []string{bad}); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
