package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Set by the linker: version for releases (-X main.version=v1.2.3), which
// wins over the build info's; the vcs* from `make build`, for a checkout
// the go command does not stamp (a git worktree, -buildvcs=false), used
// only where the build info has no revision.
var (
	version     = "devel"
	vcsRevision string
	vcsTime     string
	vcsModified string // "true" when the tree had uncommitted changes
)

// versionText is what `sshvpn version` and `connect -V` print: the
// version, the commit it was built from, and the Go that built it, so a
// bug report names the exact source.
func versionText() string {
	bi, _ := debug.ReadBuildInfo()
	linked := map[string]string{"vcs.revision": vcsRevision, "vcs.time": vcsTime, "vcs.modified": vcsModified}
	return describeBuild(bi, version, linked, runtime.GOOS+"/"+runtime.GOARCH)
}

// describeBuild is versionText from its parts, for the tests. bi may be
// nil (a binary built without module support); linked holds the vcs.*
// settings the linker was given.
func describeBuild(bi *debug.BuildInfo, linkedVersion string, linked map[string]string, platform string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "sshvpn %s\n", versionOf(bi, linkedVersion))
	vcs := linked
	goVersion := runtime.Version()
	if bi != nil {
		goVersion = bi.GoVersion
		stamped := map[string]string{}
		for _, s := range bi.Settings {
			stamped[s.Key] = s.Value
		}
		if stamped["vcs.revision"] != "" {
			vcs = stamped
		}
	}
	if rev := vcs["vcs.revision"]; rev != "" {
		fmt.Fprintf(&b, "revision %s", rev)
		if t := vcs["vcs.time"]; t != "" {
			fmt.Fprintf(&b, " %s", t)
		}
		if vcs["vcs.modified"] == "true" {
			b.WriteString(" modified")
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "%s %s\n", goVersion, platform)
	return b.String()
}

// versionOf is the version alone: the linker's when set, else the
// module's (a tag or pseudo-version from go install or a VCS build),
// else "devel".
func versionOf(bi *debug.BuildInfo, linked string) string {
	if linked != "devel" && linked != "" {
		return linked
	}
	if bi != nil && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}
