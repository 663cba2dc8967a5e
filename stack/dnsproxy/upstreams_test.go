package dnsproxy

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestUpstreams(t *testing.T) {
	for _, tc := range []struct {
		name, conf string
		want       []string
		skipped    []string // substrings the error must hold; none means nil error
	}{
		{
			name: "systemd-resolved stub",
			conf: "# comment\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n",
			want: []string{"127.0.0.53:53"},
		},
		{
			name: "v4, v6 with zone, duplicate, mapped",
			conf: "nameserver 192.0.2.53\nnameserver fe80::1%eth0\nnameserver 192.0.2.53\nnameserver ::ffff:192.0.2.54\n",
			want: []string{"192.0.2.53:53", "[fe80::1%eth0]:53", "192.0.2.54:53"},
		},
		{
			name:    "bad lines skipped and named",
			conf:    "nameserver\nnameserver not-an-ip\nnameserver 0.0.0.0\nnameserver 192.0.2.1\n",
			want:    []string{"192.0.2.1:53"},
			skipped: []string{"line 1", "line 2", `"not-an-ip"`, "line 3", "unspecified"},
		},
		{
			name:    "no nameserver",
			conf:    "search example\n",
			skipped: []string{"no usable nameserver"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "resolv.conf")
			if err := os.WriteFile(path, []byte(tc.conf), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := Upstreams(path)
			var want []netip.AddrPort
			for _, s := range tc.want {
				want = append(want, netip.MustParseAddrPort(s))
			}
			if !slices.Equal(got, want) {
				t.Errorf("upstreams %v, want %v", got, want)
			}
			if len(tc.skipped) == 0 && err != nil {
				t.Errorf("error %v, want none", err)
			}
			for _, s := range tc.skipped {
				if err == nil || !strings.Contains(err.Error(), s) {
					t.Errorf("error %v, want it to say %q", err, s)
				}
			}
		})
	}
}

func TestUpstreamsMissingFile(t *testing.T) {
	_, err := Upstreams(filepath.Join(t.TempDir(), "nope"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("error %v, want fs.ErrNotExist", err)
	}
}
