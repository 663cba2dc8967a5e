//go:build unix

package proxy

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// checkOwner refuses a file that belongs to neither the user running us
// nor root, as ssh refuses such a key: its owner could change it.
func checkOwner(path string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if me := os.Getuid(); int(st.Uid) != me && st.Uid != 0 {
		return fmt.Errorf("proxy credentials: %s belongs to uid %d, not to you (uid %d) or root: it holds passwords, and its owner can change them; run chown %d %s",
			path, st.Uid, me, me, path)
	}
	return nil
}
