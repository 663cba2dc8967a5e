package sshclient

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzResolve feeds arbitrary text to the reader as a user config that
// also includes itself and a second file: no panic, no hang (Include loops
// end at the depth limit), and Match exec never runs a command.
func FuzzResolve(f *testing.F) {
	for _, s := range []string{
		"Host *\n  Port 22\n",
		"Match final all\n  User x\nInclude self\n",
		"Include self other\nHost=a b !c\n\tHostName %h.x\n",
		"Match exec \"touch /x\" host a,!b user 'q r'\n IdentityFile ~/%d/%C\n",
		"IgnoreUnknown foo*\nfoobar 1\nProxyJump a,b@c:22,[::1]:2\n",
		"\"Port\" 1\nPort==2\nMatch localnetwork 127.0.0.0/8 tagged \"\"\nTag t\n",
		"Match !all\nMatch canonical all\nMatch host=x exec=y\nCanonicalizeHostname yes\n",
	} {
		f.Add(s, "dest")
	}
	f.Fuzz(func(t *testing.T, config, dest string) {
		if len(config) > 4096 {
			return
		}
		e := testEnv(t)
		self := e.userConfig
		writeFile(t, self, config)
		writeFile(t, filepath.Join(e.home, ".ssh", "other"), strings.ToUpper(config))
		if err := os.Symlink(self, filepath.Join(e.home, ".ssh", "self")); err != nil {
			t.Fatal(err)
		}
		ran := false
		_, _ = resolveWith(Options{Destination: dest}, e, func(string) (bool, error) {
			ran = true
			return len(config)%2 == 0, nil
		})
		_ = ran
	})
}
