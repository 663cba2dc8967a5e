package metrics

import (
	"runtime"
	"runtime/debug"
	"sync"
)

// buildInfo is readBuild's answer, read once: the binary does not change.
var buildInfo = sync.OnceValue(readBuild)

// build is what sshvpn_build_info says of the binary.
type build struct {
	version, revision, goVersion string
}

// readBuild reads the binary's build info: the module version `go install`
// stamps, the VCS revision a build from a checkout stamps ("-dirty" when
// it had changes), and the Go release.
func readBuild() build {
	b := build{revision: "unknown", goVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	b.version = bi.Main.Version
	var modified bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.revision = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if modified && b.revision != "unknown" {
		b.revision += "-dirty"
	}
	return b
}
