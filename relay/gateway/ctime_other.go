//go:build !linux

package gateway

import (
	"syscall"
	"time"
)

// ctime is the inode change time: a chmod or chown changes it, so a file
// made unsafe is checked again at the next login.
func ctime(st *syscall.Stat_t) time.Time { return time.Unix(st.Ctimespec.Unix()) }
