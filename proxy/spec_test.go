package proxy

import (
	"slices"
	"strings"
	"testing"
)

func TestParseDynamic(t *testing.T) {
	loop := func(p string) []string { return []string{"127.0.0.1:" + p, "[::1]:" + p} }
	for _, tc := range []struct {
		spec  string
		binds []string
		err   string
	}{
		{spec: "1080", binds: loop("1080")},
		{spec: "0", binds: loop("0")},
		{spec: "localhost:1080", binds: loop("1080")},
		{spec: "*:1080", binds: []string{":1080"}},
		{spec: ":1080", binds: []string{":1080"}},
		{spec: "198.18.0.1:1080", binds: []string{"198.18.0.1:1080"}},
		{spec: "198.18.0.1/1080", binds: []string{"198.18.0.1:1080"}},
		{spec: "[::1]:1080", binds: []string{"[::1]:1080"}},
		{spec: "[2001:2::1]:9", binds: []string{"[2001:2::1]:9"}},
		{spec: "", err: "bad port"},
		{spec: "65536", err: "bad port"},
		{spec: "-1", err: "bad port"},
		{spec: "http", err: "bad port"},
		{spec: "::1:1080", err: "want [bind_address:]port"},
		{spec: "[::1:1080", err: "unclosed"},
		{spec: "[::1]x:1080", err: "must be followed"},
		{spec: "a:b:c", err: "want [bind_address:]port"},
	} {
		binds, err := ParseDynamic(tc.spec)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseDynamic(%q) = %q, %v; want an error containing %q", tc.spec, binds, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(binds, tc.binds) {
			t.Errorf("ParseDynamic(%q) = %q, %v; want %q", tc.spec, binds, err, tc.binds)
		}
	}
}

func TestParseLocal(t *testing.T) {
	loop := []string{"127.0.0.1:8080", "[::1]:8080"}
	for _, tc := range []struct {
		spec  string
		binds []string
		host  string
		port  uint16
		err   string
	}{
		{spec: "8080:example.com:80", binds: loop, host: "example.com", port: 80},
		{spec: "8080:198.18.0.7:80", binds: loop, host: "198.18.0.7", port: 80},
		{spec: "8080:[2001:2::7]:80", binds: loop, host: "2001:2::7", port: 80},
		{spec: "8080/[2001:2::7]/80", binds: loop, host: "2001:2::7", port: 80},
		{spec: "localhost:8080:h:80", binds: loop, host: "h", port: 80},
		{spec: "*:8080:h:80", binds: []string{":8080"}, host: "h", port: 80},
		{spec: ":8080:h:80", binds: []string{":8080"}, host: "h", port: 80},
		{spec: "[::1]:8080:h:80", binds: []string{"[::1]:8080"}, host: "h", port: 80},
		{spec: "198.18.0.1:8080:h:80", binds: []string{"198.18.0.1:8080"}, host: "h", port: 80},
		{spec: "8080:h", err: "want [bind_address:]port:host:hostport"},
		{spec: "8080:2001:2::7:80", err: "want [bind_address:]port:host:hostport"},
		{spec: "8080:h:0", err: "hostport 0"},
		{spec: "8080:h:70000", err: "bad port"},
		{spec: "x:h:80", err: "bad port"},
		{spec: "8080::80", err: "empty host"},
		{spec: "/tmp/sock", err: "Unix-socket"},
		{spec: "8080:/run/app.sock", err: "Unix-socket"},
	} {
		binds, host, port, err := ParseLocal(tc.spec)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseLocal(%q) = %q %q %d, %v; want an error containing %q", tc.spec, binds, host, port, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(binds, tc.binds) || host != tc.host || port != tc.port {
			t.Errorf("ParseLocal(%q) = %q %q %d, %v; want %q %q %d", tc.spec, binds, host, port, err, tc.binds, tc.host, tc.port)
		}
	}
}
