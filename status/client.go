package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrNoProcess is Query's error when no sshvpn process serves its status
// in the directory.
var ErrNoProcess = errors.New("no sshvpn process is running")

// maxReport bounds what Fetch reads: a Report of thousands of tunnels is
// well under it, and a peer that is not sshvpn cannot make it grow.
const maxReport = 64 << 20

// Fetch asks the process behind the socket at path for its Report. It
// believes only a server of this process's user or root (see believed).
func Fetch(ctx context.Context, path string) (Report, error) {
	c, err := dial(ctx, path)
	if err != nil {
		return Report{}, err
	}
	defer c.Close()
	uid, err := peerUID(c)
	if err != nil {
		return Report{}, fmt.Errorf("status socket %s: whose server it is: %w", path, err)
	}
	if !believed(uid, path) {
		return Report{}, foreignServer(path, uid)
	}
	c.SetDeadline(time.Now().Add(peerDeadline))
	var r Report
	if err := json.NewDecoder(io.LimitReader(c, maxReport)).Decode(&r); err != nil {
		if errors.Is(err, io.EOF) {
			return Report{}, fmt.Errorf("status socket %s closed without an answer: it refuses other users; run sshvpn status as %s or root", path, owner(path))
		}
		return Report{}, fmt.Errorf("status socket %s: %w", path, err)
	}
	if r.Schema != Schema {
		return r, fmt.Errorf("status socket %s: schema %d, this sshvpn reads %d: use the sshvpn that runs there", path, r.Schema, Schema)
	}
	return r, nil
}

// owner names a file's owner for messages: "user nobody (uid 65534)";
// its directory's when the file is out of reach, as a socket in another
// user's 0700 directory is.
func owner(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		if fi, err = os.Stat(filepath.Dir(path)); err != nil {
			return "its owner"
		}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "its owner"
	}
	return uidName(int(st.Uid))
}

// uidName names a uid for messages: "user nobody (uid 65534)".
func uidName(uid int) string {
	id := strconv.Itoa(uid)
	if u, err := user.LookupId(id); err == nil {
		return fmt.Sprintf("user %s (uid %s)", u.Username, id)
	}
	return "uid " + id
}

// Sockets lists the status sockets in dir, in name order. A directory
// another user could have filled (see checkDir) is an error.
func Sockets(dir string) ([]string, error) {
	if _, err := checkDir(dir); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("status directory %s belongs to %s: run sshvpn status as that user or root", dir, owner(dir))
		}
		return nil, fmt.Errorf("status directory: %w", err)
	}
	var paths []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), socketSuffix) && e.Type()&os.ModeSocket != 0 {
			paths = append(paths, filepath.Join(dir, e.Name()))
		}
	}
	slices.Sort(paths)
	return paths, nil
}

// Query fetches the Report of every process serving one in dir. Stale
// sockets are removed (when it may) and skipped, and so are the sockets
// of processes still starting; a socket it cannot read or believe is an
// error, with the Reports it could read. With no process at all it
// returns ErrNoProcess.
func Query(ctx context.Context, dir string) ([]Report, error) {
	paths, err := Sockets(dir)
	if err != nil {
		return nil, err
	}
	var reports []Report
	var errs []error
	for _, p := range paths {
		r, err := Fetch(ctx, p)
		if _, stale := errors.AsType[*StaleError](err); stale {
			os.Remove(p)
			continue
		}
		if errors.Is(err, errNotListening) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		reports = append(reports, r)
	}
	if len(reports) == 0 && len(errs) == 0 {
		return nil, fmt.Errorf("%w: no status socket in %s (give the process's --state-dir with --state-dir)", ErrNoProcess, dir)
	}
	return reports, errors.Join(errs...)
}
