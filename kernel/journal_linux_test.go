package kernel

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// hostState is what the journal tests compare: links, addresses, routes,
// the forwarding sysctl and the nftables ruleset. A link's qdisc is left
// out: the kernel gives a link one the first time it is up, for good.
func hostState(t *testing.T) string {
	t.Helper()
	fwd, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	return strings.Join([]string{
		regexp.MustCompile(`qdisc \S+ `).ReplaceAllString(run(t, "ip", "-o", "link"), ""), run(t, "ip", "-o", "addr"), run(t, "ip", "route"), run(t, "ip", "-6", "route"),
		"ip_forward=" + string(fwd), run(t, "nft", "list", "ruleset"),
	}, "\n")
}

// A process that dies without undoing leaves its journal; the next one in
// the same namespace undoes every change it lists, and removes it.
func TestJournalRecoversADeadProcess(t *testing.T) {
	requireTool(t, "nft")
	inNewNS(t, func() {
		run(t, "ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1")
		os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("0"), 0o644)
		before := hostState(t)
		dir := t.TempDir()
		j, err := OpenJournal(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		u := j.newUndo(nil)
		for _, err := range []error{
			u.LinkUp("v0"),
			u.AddAddress("v0", netip.MustParsePrefix("198.18.7.1/24"), true),
			u.AddRoute(netip.MustParsePrefix("198.18.8.0/24"), "v0"),
			u.AddUnreachable(netip.MustParsePrefix("198.18.9.0/24")),
			u.SetSysctl("net.ipv4.ip_forward", "1"),
			u.Masquerade(netip.MustParsePrefix("198.18.9.0/24")),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
		if hostState(t) == before {
			t.Fatal("the changes changed nothing")
		}
		// A live journal is left alone.
		if n, err := Recover(dir, nil); n != 0 || err != nil {
			t.Fatalf("Recover with the owner alive = %d, %v; want nothing undone", n, err)
		}
		// Die: the lock goes with the file, nothing is undone.
		j.f.Close()
		n, err := Recover(dir, nil)
		if err != nil || n != 6 {
			t.Fatalf("Recover = %d, %v; want the 6 changes undone", n, err)
		}
		if after := hostState(t); after != before {
			t.Errorf("host after recovery:\n%s\nwant:\n%s", after, before)
		}
		if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
			t.Errorf("journals left after recovery: %v", left)
		}
	})
}

// A clean run strikes what it undid and leaves no journal behind; changes
// it could not undo keep theirs.
func TestJournalCleanRun(t *testing.T) {
	requireTool(t, "ip")
	inNewNS(t, func() {
		run(t, "ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1")
		dir := t.TempDir()
		j, err := OpenJournal(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		u := j.newUndo(nil)
		if err := u.AddAddress("v0", netip.MustParsePrefix("198.18.7.1/24"), false); err != nil {
			t.Fatal(err)
		}
		if err := u.Revert(); err != nil {
			t.Fatal(err)
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
			t.Errorf("journal left after a clean run: %v", left)
		}

		j, err = OpenJournal(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := j.newUndo(nil).AddAddress("v0", netip.MustParsePrefix("198.18.7.1/24"), false); err != nil {
			t.Fatal(err)
		}
		err = j.Close()
		if err == nil || !strings.Contains(err.Error(), "198.18.7.1/24 on v0") {
			t.Fatalf("Close with a change not undone = %v, want it named", err)
		}
		if n, err := Recover(dir, nil); n != 1 || err != nil {
			t.Fatalf("Recover = %d, %v", n, err)
		}
		if strings.Contains(run(t, "ip", "-o", "addr"), "198.18.7.1") {
			t.Error("the address outlived recovery")
		}
	})
}

// journalWithAddress opens a journal in dir, in the namespace the caller
// is in, with one change made through it: 198.18.7.1/24 on a veth v0.
func journalWithAddress(t *testing.T, dir string) *Journal {
	t.Helper()
	run(t, "ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1")
	j, err := OpenJournal(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.newUndo(nil).AddAddress("v0", netip.MustParsePrefix("198.18.7.1/24"), false); err != nil {
		t.Fatal(err)
	}
	return j
}

// A journal from another network namespace is not replayed here.
func TestJournalStaysInItsNamespace(t *testing.T) {
	requireTool(t, "ip")
	dir := t.TempDir()
	var keep netns.NsHandle // the namespace outlives its writer
	inNewNS(t, func() {
		j := journalWithAddress(t, dir)
		j.f.Close() // dies
		var err error
		if keep, err = netns.Get(); err != nil {
			t.Fatal(err)
		}
	})
	defer keep.Close()
	inNewNS(t, func() {
		if n, err := Recover(dir, nil); n != 0 || err != nil {
			t.Fatalf("Recover in another namespace = %d, %v; want nothing", n, err)
		}
	})
	if left, _ := filepath.Glob(filepath.Join(dir, "undo-*.json")); len(left) != 1 {
		t.Errorf("the other namespace's journal is gone: %v", left)
	}
}

// A journal whose network namespace no longer exists is removed: its
// changes went with the namespace, and nothing else would ever remove it.
func TestJournalOfAGoneNamespaceIsRemoved(t *testing.T) {
	requireTool(t, "ip")
	dir := t.TempDir()
	inNewNS(t, func() {
		j := journalWithAddress(t, dir)
		j.f.Close() // dies, and the namespace with it
	})
	inNewNS(t, func() {
		if n, err := Recover(dir, nil); n != 0 || err != nil {
			t.Fatalf("Recover = %d, %v; want nothing undone", n, err)
		}
	})
	if left, _ := filepath.Glob(filepath.Join(dir, "undo-*.json")); len(left) != 0 {
		t.Errorf("the journal of a namespace that is gone stays: %v", left)
	}
}

// A journal from an earlier boot, one without a header, and one others may
// write are not replayed; the first two are removed.
func TestJournalRefusesWhatItCannotTrust(t *testing.T) {
	requireTool(t, "ip")
	inNewNS(t, func() {
		dir := t.TempDir()
		j := journalWithAddress(t, dir)
		j.f.Close() // dies
		data, _ := os.ReadFile(j.path)
		// The same journal, as if from another boot.
		old := strings.Replace(string(data), `"boot":"`+bootID()+`"`, `"boot":"another-boot"`, 1)
		if old == string(data) {
			t.Fatal("no boot id in the journal's header")
		}
		os.WriteFile(j.path, []byte(old), 0o600)
		os.WriteFile(filepath.Join(dir, "undo-1-empty.json"), nil, 0o600)
		if n, err := Recover(dir, nil); n != 0 || err != nil {
			t.Fatalf("Recover = %d, %v; want nothing undone", n, err)
		}
		if !strings.Contains(run(t, "ip", "-o", "addr"), "198.18.7.1") {
			t.Error("a journal from another boot was replayed")
		}
		if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
			t.Errorf("journals from another boot or without a header left: %v", left)
		}
		// A state directory others may write is refused.
		os.Chmod(dir, 0o777)
		if _, err := Recover(dir, nil); err == nil || !strings.Contains(err.Error(), "writable by others") {
			t.Errorf("Recover in a world-writable directory = %v", err)
		}
	})
}

// Changes a dead process made one over another are undone newest first,
// so each reversal finds what the next older change left: a link's MTU
// and a sysctl set twice, by two undo logs sharing one journal as a gateway's
// own and a tunnel's do, come back to what they were before both.
func TestJournalReplaysNewestFirst(t *testing.T) {
	requireTool(t, "ip")
	inNewNS(t, func() {
		run(t, "ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1")
		const rpFilter = "/proc/sys/net/ipv4/conf/all/rp_filter"
		rp := func() string {
			b, err := os.ReadFile(rpFilter)
			if err != nil {
				t.Fatal(err)
			}
			return strings.TrimSpace(string(b))
		}
		// Two values other than the one in force, for two changes.
		var values []string
		for _, v := range []string{"0", "1", "2"} {
			if v != rp() {
				values = append(values, v)
			}
		}
		before, rpBefore := hostState(t), rp()
		dir := t.TempDir()
		j, err := OpenJournal(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		older, newer := j.newUndo(nil), j.newUndo(nil)
		for _, err := range []error{
			older.SetMTU("v0", 1400),
			older.SetSysctl("net.ipv4.conf.all.rp_filter", values[0]),
			newer.SetMTU("v0", 1300),
			newer.SetSysctl("net.ipv4.conf.all.rp_filter", values[1]),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
		j.f.Close() // dies
		if n, err := Recover(dir, nil); n != 4 || err != nil {
			t.Fatalf("Recover = %d, %v; want the 4 changes undone", n, err)
		}
		if got := rp(); got != rpBefore {
			t.Errorf("rp_filter after recovery = %s, want %s as before both changes", got, rpBefore)
		}
		if after := hostState(t); after != before {
			t.Errorf("host after recovery:\n%s\nwant:\n%s", after, before)
		}
	})
}

// A change struck from the journal is not undone again: not one Revert
// undid (the operator may have made it since, by hand), nor one that
// failed (what was in its way is someone else's).
func TestJournalSkipsStruckChanges(t *testing.T) {
	requireTool(t, "ip")
	inNewNS(t, func() {
		run(t, "ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1")
		run(t, "ip", "link", "set", "v0", "up")
		dir := t.TempDir()
		j, err := OpenJournal(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		u := j.newUndo(nil)
		if err := u.AddAddress("v0", netip.MustParsePrefix("198.18.7.1/24"), false); err != nil {
			t.Fatal(err)
		}
		if err := u.Revert(); err != nil {
			t.Fatal(err)
		}
		run(t, "ip", "addr", "add", "198.18.7.1/24", "dev", "v0")
		run(t, "ip", "route", "add", "198.18.8.0/24", "dev", "v0")
		if err := u.AddRoute(netip.MustParsePrefix("198.18.8.0/24"), "v0"); err == nil {
			t.Fatal("AddRoute over the operator's route succeeded; want it refused")
		}
		before := hostState(t)
		j.f.Close() // dies
		if n, err := Recover(dir, nil); n != 0 || err != nil {
			t.Fatalf("Recover = %d, %v; want nothing undone", n, err)
		}
		if after := hostState(t); after != before {
			t.Errorf("recovery undid struck changes; host:\n%s\nwant:\n%s", after, before)
		}
	})
}

// inFullFS runs fn with a directory on a file system that has no room
// left: a tmpfs of one page, filled, mounted in a mount namespace of the
// calling thread's own so that the host never sees it.
func inFullFS(t *testing.T, fn func(dir string)) {
	t.Helper()
	requireRoot(t)
	runtime.LockOSThread() // never unlocked: Go discards the thread with its namespace
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		t.Fatalf("new mount namespace: %v", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		t.Fatalf("make mounts private: %v", err)
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=4k,mode=0700"); err != nil {
		t.Fatalf("mount a tmpfs on %s: %v", dir, err)
	}
	defer unix.Unmount(dir, 0)
	err := os.WriteFile(filepath.Join(dir, "fill"), make([]byte, 64<<10), 0o600)
	if !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("filling the tmpfs: %v, want ENOSPC", err)
	}
	fn(dir)
}

// On a full disk the journal's header cannot be written: OpenJournal fails
// naming the file and the cause, and leaves no journal behind under its
// hidden name, where no recovery would ever look.
func TestOpenJournalOnAFullDisk(t *testing.T) {
	inFullFS(t, func(dir string) {
		j, err := OpenJournal(dir, nil)
		if err == nil {
			j.Close()
			t.Fatal("OpenJournal on a full disk succeeded")
		}
		if !errors.Is(err, unix.ENOSPC) || !strings.Contains(err.Error(), dir+"/.undo-") {
			t.Errorf("OpenJournal = %v; want ENOSPC, naming the journal in %s", err, dir)
		}
		assertOnlyFiles(t, dir, "fill")
	})
}
