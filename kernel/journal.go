package kernel

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Journal is the undo log on disk: every change an undoLog made from it is
// written (and synced) before it is made, and struck once it is undone. A
// process that dies without undoing leaves its journal behind, and the next
// OpenJournal, or sshvpn cleanup (Recover), undoes what it lists, whatever
// flags that next run has.
//
// One file per process, <dir>/undo-<pid>.json, locked (flock) while the
// process lives: an unlocked journal is a dead process's. Each names the
// network namespace its changes were made in, and is only replayed there.
type Journal struct {
	path string
	log  *slog.Logger

	mu   sync.Mutex
	f    *os.File
	seq  uint64
	open map[uint64]change // made and not yet undone
}

// entry is one line of the journal: a header, a change, or the news that
// change Seq was undone (or never made).
type entry struct {
	PID   int    `json:"pid,omitempty"`
	Boot  string `json:"boot,omitempty"` // /proc/sys/kernel/random/boot_id: a reboot undid it all
	NetNS string `json:"netns,omitempty"`
	// NetNSInode is the namespace's inode, to tell whether it still
	// exists: a cookie cannot be looked up, an inode can.
	NetNSInode uint64    `json:"netns_inode,omitempty"`
	Started    time.Time `json:"started,omitzero"`
	Seq        uint64    `json:"seq,omitempty"`
	Change     *change   `json:"change,omitempty"`
	Done       bool      `json:"done,omitempty"`
}

// DefaultStateDir is where journals live: /run/sshvpn for root, else the
// user's runtime directory.
func DefaultStateDir() string {
	if os.Geteuid() == 0 {
		return "/run/sshvpn"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "sshvpn")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("sshvpn-%d", os.Getuid()))
}

// OpenJournal first undoes what dead processes left in dir for this
// network namespace, then starts this process's journal there. What it
// could not undo is logged, not fatal: it stays for sshvpn cleanup.
func OpenJournal(dir string, log *slog.Logger) (*Journal, error) {
	return openJournal(dir, log, os.Rename)
}

// openJournal is OpenJournal with the rename that puts the journal in
// place given, so that a test can make it fail as a full or read-only file
// system would.
func openJournal(dir string, log *slog.Logger, rename func(oldpath, newpath string) error) (*Journal, error) {
	if log == nil {
		log = slog.Default()
	}
	if _, err := Recover(dir, log); err != nil {
		if !errors.Is(err, errUnrecovered) {
			return nil, err
		}
		log.Error("some changes a dead sshvpn made could not be undone; run sshvpn cleanup once the cause is fixed", "err", err)
	}
	hdr, err := header()
	if err != nil {
		return nil, err
	}
	// The journal is made under a name Recover does not look at, locked,
	// given its header and only then renamed into place: Recover never
	// sees a journal without a header or one nobody holds yet.
	name := fmt.Sprintf("undo-%d-%x.json", os.Getpid(), rand.Uint64())
	tmp := filepath.Join(dir, "."+name+".new")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("undo journal %s: %w", tmp, err)
	}
	j := &Journal{path: tmp, log: log, f: f, open: make(map[uint64]change)}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return nil, j.discard(fmt.Errorf("undo journal %s: lock: %w", tmp, err))
	}
	if err := j.write(hdr); err != nil {
		return nil, j.discard(err)
	}
	path := filepath.Join(dir, name)
	if err := rename(tmp, path); err != nil {
		return nil, j.discard(fmt.Errorf("undo journal: %w", err))
	}
	j.path = path
	return j, nil
}

// discard removes a journal OpenJournal could not finish and returns err,
// with the reason if the file stays: under its hidden name, no Recover
// would ever read it or remove it.
func (j *Journal) discard(err error) error {
	if rerr := os.Remove(j.path); rerr != nil {
		err = errors.Join(err, fmt.Errorf("left behind: %w", rerr))
	}
	j.f.Close()
	return err
}

// header describes this process, this boot and this network namespace.
func header() (entry, error) {
	ns, err := netnsID()
	if err != nil {
		return entry{}, fmt.Errorf("undo journal: %w", err)
	}
	return entry{PID: os.Getpid(), Boot: bootID(), NetNS: ns, NetNSInode: netnsInode(), Started: time.Now()}, nil
}

// bootID tells this boot from the last: what a journal from another boot
// lists died with it.
func bootID() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b))
}

// errUnrecovered marks changes Recover found but could not undo.
var errUnrecovered = errors.New("not undone")

// newUndo returns an undoLog that journals its changes here.
func (j *Journal) newUndo(log *slog.Logger) *undoLog {
	return &undoLog{logger: log, journal: j}
}

func (j *Journal) write(e entry) error {
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if _, err := j.f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("undo journal %s: %w", j.path, err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("undo journal %s: %w", j.path, err)
	}
	return nil
}

// intend writes c before it is made.
func (j *Journal) intend(c change) (uint64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return 0, errors.New("undo journal closed")
	}
	j.seq++
	if err := j.write(entry{Seq: j.seq, Change: &c}); err != nil {
		return 0, err
	}
	j.open[j.seq] = c
	return j.seq, nil
}

// done strikes change seq: undone, or never made. A failed write leaves the
// change listed, and Recover's revert of a change that is gone is harmless.
func (j *Journal) done(seq uint64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, ok := j.open[seq]; !ok || j.f == nil {
		return
	}
	delete(j.open, seq)
	if err := j.write(entry{Seq: seq, Done: true}); err != nil {
		j.log.Warn("cannot strike an undone change from the journal", "err", err)
	}
}

// Close ends the journal. With every change undone it removes the file;
// otherwise it keeps it for Recover and says what is left.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	left := make([]string, 0, len(j.open))
	for _, c := range j.open {
		left = append(left, c.String())
	}
	if len(left) == 0 {
		os.Remove(j.path)
	}
	err := j.f.Close()
	j.f = nil
	if len(left) > 0 {
		return fmt.Errorf("%d host changes not undone, kept in %s for sshvpn cleanup: %s", len(left), j.path, strings.Join(left, "; "))
	}
	return err
}

// Recover undoes, newest first, what the journals of dead processes in dir
// list for this network namespace, and removes each journal it finished. It
// returns how many changes it undid. A journal still locked belongs to a
// live process and is left alone; so is one from another namespace.
func Recover(dir string, log *slog.Logger) (int, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, fmt.Errorf("state directory %s: %w", dir, err)
	}
	if err := checkPrivate(dir); err != nil {
		return 0, fmt.Errorf("state directory %s: %w", dir, err)
	}
	here, err := header()
	if err != nil {
		return 0, err
	}
	paths, err := filepath.Glob(filepath.Join(dir, "undo-*.json"))
	if err != nil {
		return 0, err
	}
	total := 0
	var errs []error
	for _, p := range paths {
		n, err := recoverOne(p, here, log)
		total += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	return total, errors.Join(errs...)
}

func recoverOne(path string, here entry, log *slog.Logger) (int, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("undo journal %s: %w", path, err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return 0, nil // a live process's
	}
	// A journal sshvpn did not write (another owner, writable by others)
	// is not trusted: replaying it would write its values as root.
	if err := checkPrivate(path); err != nil {
		log.Warn("undo journal ignored", "journal", path, "why", err)
		return 0, nil
	}
	hdr, todo, err := readJournal(f)
	switch {
	case err != nil:
		log.Warn("undo journal without a header removed: it is not sshvpn's, or was cut short", "journal", path, "err", err)
		os.Remove(path)
		return 0, nil
	case hdr.Boot != here.Boot:
		log.Info("undo journal from an earlier boot removed: its changes went with that boot", "journal", path, "pid", hdr.PID)
		os.Remove(path)
		return 0, nil
	case hdr.NetNS != here.NetNS && hdr.NetNSInode != 0 && !netnsExists(hdr.NetNSInode):
		// Its changes went with the namespace (a test's, a container's).
		log.Info("undo journal of a network namespace that is gone removed", "journal", path, "pid", hdr.PID)
		os.Remove(path)
		return 0, nil
	case hdr.NetNS != here.NetNS:
		return 0, nil
	}
	if len(todo) > 0 {
		log.Warn("undoing what a dead sshvpn left on this host", "pid", hdr.PID, "since", hdr.Started, "changes", len(todo), "journal", path)
	}
	j := &Journal{path: path, log: log, f: f, open: make(map[uint64]change)}
	var errs []error
	undone := 0
	for i := len(todo) - 1; i >= 0; i-- {
		e := todo[i]
		j.open[e.Seq] = *e.Change
		if err := e.Change.revert(log); err != nil {
			errs = append(errs, fmt.Errorf("could not undo %s (left by pid %d): %w: %w", e.Change, hdr.PID, errUnrecovered, err))
			continue
		}
		j.done(e.Seq)
		undone++
	}
	if len(errs) == 0 {
		os.Remove(path)
	}
	return undone, errors.Join(errs...)
}

// readJournal returns the header and the changes not struck, in order.
func readJournal(f *os.File) (entry, []entry, error) {
	var hdr entry
	var order []uint64
	open := map[uint64]entry{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for first := true; sc.Scan(); first = false {
		var e entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			// A line cut short by the crash: the change it began was
			// never made, since it is written before the change.
			continue
		}
		switch {
		case first:
			hdr = e
		case e.Done:
			delete(open, e.Seq)
		case e.Change != nil:
			open[e.Seq] = e
			order = append(order, e.Seq)
		}
	}
	if err := sc.Err(); err != nil {
		return hdr, nil, err
	}
	var todo []entry
	for _, s := range order {
		if e, ok := open[s]; ok {
			todo = append(todo, e)
		}
	}
	if hdr.PID == 0 {
		return hdr, nil, errors.New("no header: not an sshvpn journal")
	}
	return hdr, todo, nil
}

// checkPrivate refuses a state directory or journal that someone other
// than us (or root) owns, or that others may write.
func checkPrivate(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("owned by uid %d, neither root nor us", st.Uid)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("writable by others (mode %04o): chmod go-w %s", fi.Mode().Perm(), path)
	}
	return nil
}
