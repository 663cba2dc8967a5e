package status

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// A socket that refuses connections is not proof that its process is
// gone: net.ListenUnix binds, then listens, and a connect in between is
// refused as it is on a dead process's socket. So a socket is stale only
// when the process its name carries (SocketName) has exited.

// StaleError is a socket whose process exited without removing it.
type StaleError struct{ Path string }

func (e *StaleError) Error() string {
	return fmt.Sprintf("status socket %s: no process listens on it (it exited without removing it)", e.Path)
}

// errNotListening is a refused socket whose process runs: it is starting,
// or it died and its pid went to another process.
var errNotListening = errors.New("its process runs but does not listen on it yet")

// refused classifies a socket that refused a connection.
func refused(path string) error {
	pid := pidOf(path)
	if pid > 0 && errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
		return &StaleError{path}
	}
	if pid <= 0 {
		return fmt.Errorf("status socket %s refuses connections, and its name carries no pid", path)
	}
	return fmt.Errorf("status socket %s: %w (pid %d): try again; if it stays so, the pid went to another process and the socket can be removed", path, errNotListening, pid)
}

// pidOf is the pid in a socket's name, role-PID.sock, or 0.
func pidOf(path string) int {
	name := strings.TrimSuffix(filepath.Base(path), socketSuffix)
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return 0
	}
	pid, err := strconv.Atoi(name[i+1:])
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// RemoveStale removes the sockets in dir whose processes exited.
func RemoveStale(dir string) {
	paths, _ := Sockets(dir)
	for _, p := range paths {
		ctx, cancel := context.WithTimeout(context.Background(), peerDeadline)
		c, err := dial(ctx, p)
		cancel()
		if err == nil {
			c.Close()
			continue
		}
		if _, stale := errors.AsType[*StaleError](err); stale {
			os.Remove(p)
		}
	}
}

// dial connects to the socket at path; a refusal is classified.
func dial(ctx context.Context, path string) (*net.UnixConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, dialError(path, err)
	}
	return c.(*net.UnixConn), nil
}

func dialError(path string, err error) error {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return refused(path)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("status socket %s belongs to %s: run sshvpn status as that user or root", path, owner(path))
	}
	return fmt.Errorf("status socket %s: %w", path, err)
}
