package main

import (
	"runtime/debug"
	"testing"
)

func TestDescribeBuild(t *testing.T) {
	stamped := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/sshvpn/sshvpn", Version: "v0.0.0-20261208015612-1b4ccab89564+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "1b4ccab89564f361a9801fc7e9244c9755e4a0e5"},
			{Key: "vcs.time", Value: "2026-12-08T01:56:12Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	plain := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/sshvpn/sshvpn", Version: "(devel)"}}
	linked := map[string]string{"vcs.revision": "0123456789abcdef0123456789abcdef01234567", "vcs.time": "2026-12-01T00:00:00Z"}
	for _, tc := range []struct {
		name   string
		bi     *debug.BuildInfo
		ver    string
		linked map[string]string
		want   string
	}{
		{"stamped", stamped, "devel", nil,
			"sshvpn v0.0.0-20261208015612-1b4ccab89564+dirty\nrevision 1b4ccab89564f361a9801fc7e9244c9755e4a0e5 2026-12-08T01:56:12Z modified\ngo1.26.8 linux/amd64\n"},
		{"release version wins", stamped, "v1.2.3", nil,
			"sshvpn v1.2.3\nrevision 1b4ccab89564f361a9801fc7e9244c9755e4a0e5 2026-12-08T01:56:12Z modified\ngo1.26.8 linux/amd64\n"},
		{"stamp beats the linker's revision", stamped, "devel", linked,
			"sshvpn v0.0.0-20261208015612-1b4ccab89564+dirty\nrevision 1b4ccab89564f361a9801fc7e9244c9755e4a0e5 2026-12-08T01:56:12Z modified\ngo1.26.8 linux/amd64\n"},
		{"unstamped, make's revision", plain, "devel", linked,
			"sshvpn devel\nrevision 0123456789abcdef0123456789abcdef01234567 2026-12-01T00:00:00Z\ngo1.26.8 linux/amd64\n"},
		{"nothing known", plain, "devel", nil, "sshvpn devel\ngo1.26.8 linux/amd64\n"},
	} {
		if got := describeBuild(tc.bi, tc.ver, tc.linked, "linux/amd64"); got != tc.want {
			t.Errorf("%s:\ngot  %q\nwant %q", tc.name, got, tc.want)
		}
	}
}
