package main

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// profileEnv names a file for a CPU profile of the whole run: the bench
// harness sets it to show where a tunnel's time goes (bench/README.md).
// An environment variable rather than a flag: nobody needs it to use
// sshvpn, and it must reach a gateway started by someone else's script.
const profileEnv = "SSHVPN_CPUPROFILE"

// startProfile starts the CPU profile SSHVPN_CPUPROFILE asks for and
// returns what stops it.
func startProfile() (stop func(), err error) {
	path := os.Getenv(profileEnv)
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", profileEnv, err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", profileEnv, err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
