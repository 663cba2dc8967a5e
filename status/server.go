package status

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// The bounds on what a socket peer can do: it gets one Report per
// connection and nothing else, within peerDeadline, and at most maxPeers
// are served at once; the others wait in the listen queue.
const (
	peerDeadline = 2 * time.Second
	maxPeers     = 4
)

// SocketName is the socket a process of role ("serve" or "connect") with
// pid serves its Report on, inside the state directory: several sshvpn
// processes can run on one host, and `sshvpn status` finds every one.
func SocketName(role string, pid int) string {
	return fmt.Sprintf("%s-%d%s", role, pid, socketSuffix)
}

const socketSuffix = ".sock"

// Server serves a process's Report on a unix socket only its user (and
// root) can open.
type Server struct {
	ln     *net.UnixListener
	path   string
	report func() Report
	log    *slog.Logger
	slots  chan struct{}
	wg     sync.WaitGroup
	once   sync.Once

	// Refusals are logged at most once per refusalLogEvery, with how
	// many were refused since: another user must not fill the log.
	// Only the accepting goroutine touches these.
	refusedAt    time.Time
	refusedSince int
}

const refusalLogEvery = 10 * time.Second

// Listen makes dir (mode 0700) when missing, removes the sockets dead
// processes left there, and listens on SocketName(role, os.Getpid()) in it,
// mode 0600. report is called once per peer, from the serving goroutine.
func Listen(dir, role string, report func() Report, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := ensureDir(dir); err != nil {
		return nil, err
	}
	RemoveStale(dir)
	path := filepath.Join(dir, SocketName(role, os.Getpid()))
	os.Remove(path) // a dead process of the same pid (a container's pid 1)
	// Bound with the process's umask, then made 0600: in between nobody
	// else can reach it, through a 0700 directory of ours (ensureDir). A
	// umask around the bind would be the whole process's, every thread's
	// files made meanwhile included.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("status socket %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(true)
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("status socket %s: %w", path, err)
	}
	s := &Server{ln: ln, path: path, report: report, log: log, slots: make(chan struct{}, maxPeers)}
	s.wg.Go(s.serve)
	return s, nil
}

// ensureDir makes dir 0700, or checks that the one there is ours and
// closes it to others: a socket in a directory another user controls could
// be swapped for theirs, and the socket is reachable before its chmod.
func ensureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("status directory: %w", err)
	}
	st, err := dirStat(dir)
	if err != nil {
		return err
	}
	if int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("status directory %s belongs to %s, not to this process's uid %d; give --state-dir a directory of its own", dir, uidName(int(st.Uid)), os.Geteuid())
	}
	if os.FileMode(st.Mode).Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("status directory: %w", err)
		}
	}
	return nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

// Close stops serving, removes the socket and waits for the peers being
// served.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() { err = s.ln.Close() })
	s.wg.Wait()
	return err
}

func (s *Server) serve() {
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Warn("status socket: accept failed; status is no longer served", "socket", s.path, "err", err)
			}
			return
		}
		if !s.admit(c) {
			c.Close()
			continue
		}
		s.slots <- struct{}{}
		s.wg.Go(func() {
			defer func() { <-s.slots }()
			s.answer(c)
		})
	}
}

// admit reports whether c's peer is of this process's user or root. The
// socket's mode keeps other users out already; the credentials are
// checked too, so that a socket whose mode was opened still refuses them.
// It runs before a slot is taken, so that their connections never hold one.
func (s *Server) admit(c *net.UnixConn) bool {
	uid, err := peerUID(c)
	if err != nil || (uid != 0 && uid != os.Geteuid()) {
		if s.refusedSince++; time.Since(s.refusedAt) >= refusalLogEvery {
			s.log.Warn("status socket: refused a peer of another user", "socket", s.path, "uid", uid, "err", err, "refused_since_last", s.refusedSince)
			s.refusedAt, s.refusedSince = time.Now(), 0
		}
		return false
	}
	return true
}

// answer writes one Report to c and closes it. The deadline bounds how
// long a peer that does not read holds its slot.
func (s *Server) answer(c *net.UnixConn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(peerDeadline))
	r := s.report()
	r.Schema = Schema
	if err := json.NewEncoder(c).Encode(r); err != nil {
		s.log.Debug("status socket: peer left", "err", err)
	}
}
