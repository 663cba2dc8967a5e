package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Notifier sends state changes to the service manager. A nil *Notifier is
// valid and sends nothing: what New returns outside a notify service.
type Notifier struct {
	mu     sync.Mutex
	addr   *net.UnixAddr
	closed bool
	// watchdog is WATCHDOG_USEC/2 when the manager asked for keepalives
	// from this process; 0 otherwise.
	watchdog int64 // microseconds
}

// New reads $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID and removes
// them from the environment, so that the processes sshvpn starts (an ssh
// ProxyCommand, a -f child) do not speak for the service: the manager
// accepts messages from the main process only. It returns nil, and no
// error, when $NOTIFY_SOCKET is unset.
func New() (*Notifier, error) {
	socket := os.Getenv("NOTIFY_SOCKET")
	usec, pid := os.Getenv("WATCHDOG_USEC"), os.Getenv("WATCHDOG_PID")
	for _, v := range []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} {
		os.Unsetenv(v)
	}
	if socket == "" {
		return nil, nil
	}
	n, err := Open(socket)
	if err != nil {
		return nil, err
	}
	n.watchdog, err = watchdogPeriod(usec, pid, os.Getpid())
	if err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// Open returns a Notifier that sends to socket: a filesystem path, or
// "@name" for an abstract socket.
func Open(socket string) (*Notifier, error) {
	if !strings.HasPrefix(socket, "/") && !strings.HasPrefix(socket, "@") {
		// systemd also knows vsock: addresses, which only a VM's
		// manager hands out; say so rather than fail on a path.
		return nil, fmt.Errorf("NOTIFY_SOCKET=%q: want an absolute path or @abstract name", socket)
	}
	return &Notifier{addr: &net.UnixAddr{Name: socket, Net: "unixgram"}}, nil
}

// watchdogPeriod is how often WATCHDOG=1 is due, in microseconds: half
// the manager's timeout, as sd_watchdog_enabled advises, so one late
// check does not get the service killed. 0 when the watchdog is off or
// meant for another process (WATCHDOG_PID names it).
func watchdogPeriod(usec, pid string, self int) (int64, error) {
	if usec == "" {
		return 0, nil
	}
	if pid != "" {
		p, err := strconv.Atoi(pid)
		if err != nil {
			return 0, fmt.Errorf("WATCHDOG_PID=%q: not a process id", pid)
		}
		if p != self {
			return 0, nil
		}
	}
	u, err := strconv.ParseInt(usec, 10, 64)
	if err != nil || u <= 0 {
		return 0, fmt.Errorf("WATCHDOG_USEC=%q: want a positive number of microseconds", usec)
	}
	return max(u/2, 1), nil
}

// Send sends the lines (NAME=value each) as one message.
func (n *Notifier) Send(lines ...string) error {
	if n == nil {
		return nil
	}
	msg := strings.Join(lines, "\n") + "\n"
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return net.ErrClosed
	}
	// A socket per message, as sd_notify does: messages are seconds
	// apart, and a manager that re-created its socket (daemon-reexec)
	// is found again.
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err == nil {
		_, err = conn.Write([]byte(msg))
		conn.Close()
	}
	if err != nil {
		return fmt.Errorf("notify %s: %w", n.addr.Name, err)
	}
	return nil
}

// Ready says the service is up: for Type=notify, the manager starts what
// is ordered after it only now. It also ends a reload.
func (n *Notifier) Ready() error { return n.Send("READY=1") }

// Status sets the one line `systemctl status` shows beside the unit. A
// newline would start a second assignment, so it becomes a space.
func (n *Notifier) Status(s string) error {
	return n.Send("STATUS=" + strings.ReplaceAll(s, "\n", " "))
}

// Reloading says a reload has begun; Ready says it ended. The manager
// (Type=notify-reload, or systemctl reload on a notify service) needs the
// monotonic clock's reading to tell this reload from an earlier one.
func (n *Notifier) Reloading() error {
	if n == nil {
		return nil
	}
	us, err := monotonicUsec()
	if err != nil {
		return fmt.Errorf("reloading: %w", err)
	}
	return n.Send("RELOADING=1", "MONOTONIC_USEC="+strconv.FormatUint(us, 10))
}

// Stopping says the service is shutting down, so the manager does not
// take a slow teardown for a hang before its stop timeout.
func (n *Notifier) Stopping() error { return n.Send("STOPPING=1") }

// Close ends the Notifier; later sends fail with net.ErrClosed.
func (n *Notifier) Close() error {
	if n == nil {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closed = true
	return nil
}
