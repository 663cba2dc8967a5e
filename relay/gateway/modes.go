package gateway

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// checkModes refuses an authorized_keys file another user could have
// written, as sshd's StrictModes does (auth.c secure_filename): the open
// file and every directory above it, up to the home directory when the file
// is under it or else to /, must be owned by root or by us and not be
// writable by everyone. Two differences, both deliberate: a group-writable
// file or directory is taken (Debian's sshd takes it when the group holds
// only the owner, and we cannot see group members portably), and a
// directory with the sticky bit owned by root, such as /tmp, is taken,
// because nobody else can replace what we created in it.
func checkModes(f *os.File, path string) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("authorized keys: %w", err)
	}
	if err := safe(fi, "file", path); err != nil {
		return err
	}
	abs, err := filepath.Abs(path)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return fmt.Errorf("authorized keys %s: %w", path, err)
	}
	home, _ := os.UserHomeDir()
	if home != "" {
		home, _ = filepath.EvalSymlinks(home)
	}
	for dir := filepath.Dir(abs); ; dir = filepath.Dir(dir) {
		di, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("authorized keys %s: %w", path, err)
		}
		if err := safe(di, "directory", dir); err != nil {
			return fmt.Errorf("authorized keys %s: %w", path, err)
		}
		if dir == home || dir == filepath.Dir(dir) {
			return nil
		}
	}
}

// safe reports why fi, a file or directory on the way to authorized_keys,
// could have been changed by another user.
func safe(fi fs.FileInfo, kind, path string) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	uid := uint32(os.Geteuid())
	mode := fi.Mode()
	if st.Uid != 0 && st.Uid != uid {
		return fmt.Errorf("refused: %s %s is owned by uid %d, neither root nor us (uid %d): another user could change who logs in (sshd's StrictModes)",
			kind, path, st.Uid, uid)
	}
	if mode.Perm()&0o002 != 0 && !(fi.IsDir() && mode&fs.ModeSticky != 0 && st.Uid == 0) {
		return fmt.Errorf("refused: %s %s is writable by everyone (mode %04o): chmod o-w %s (sshd's StrictModes)",
			kind, path, mode.Perm(), path)
	}
	return nil
}

// stampOf tells this version of the file from the next: a rename gives a
// new inode, an edit a new size or time.
func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return stampFrom(fi), nil
}

func stampFrom(fi fs.FileInfo) fileStamp {
	s := fileStamp{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ino = uint64(st.Ino)
		s.ctime = ctime(st)
	}
	return s
}
