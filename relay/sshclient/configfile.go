package sshclient

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"syscall"
)

// maxIncludeDepth is readconf.c's READCONF_MAX_DEPTH: the top file is depth
// 0 and a file deeper than 16 Includes is refused, which also bounds an
// Include loop.
const maxIncludeDepth = 16

// maxConfigLine bounds one line (ssh's getline has no limit; a megabyte is
// far beyond any real config and keeps a hostile file from eating memory).
const maxConfigLine = 1 << 20

// setting is one stored keyword value and where it came from.
type setting struct {
	args  []string
	where string // "file line N", "-p", "command-line", ...
}

// resolver holds the state of one resolution: the values obtained so far
// (first wins) and what Host and Match see.
type resolver struct {
	env          env
	originalHost string // the destination host as typed: Match originalhost, %n
	host         string // what Host and Match host see (lower-cased on the final pass)
	final        bool   // the second pass requested by Match final or CanonicalizeHostname
	wantFinal    bool
	vals         map[string]setting
	identities   []setting // IdentityFile accumulates
	notes        []string
	warnings     []string
	exec         func(cmd string) (bool, error) // Match exec; tests may substitute it
	execCache    map[string]bool                // the final pass does not run a command twice
}

func newResolver(e env, host string) *resolver {
	return &resolver{env: e, originalHost: host, host: host, vals: map[string]setting{}}
}

// store keeps the first value obtained for key; IdentityFile accumulates.
func (r *resolver) store(key string, args []string, where string) {
	if key == "identityfile" {
		for _, s := range r.identities {
			if s.args[0] == args[0] {
				return // add_identity_file drops a duplicate path
			}
		}
		r.identities = append(r.identities, setting{args, where})
		return
	}
	if _, ok := r.vals[key]; !ok {
		r.vals[key] = setting{args, where}
	}
}

func (r *resolver) has(key string) bool {
	_, ok := r.vals[key]
	return ok
}

// note records something read and deliberately not applied (debug level).
func (r *resolver) note(format string, a ...any) {
	r.notes = appendOnce(r.notes, fmt.Sprintf(format, a...))
}

// warn records something the user should see at the default log level.
func (r *resolver) warn(format string, a ...any) {
	r.warnings = appendOnce(r.warnings, fmt.Sprintf(format, a...))
}

// appendOnce skips a repeated message: the final pass reads every line
// again.
func appendOnce(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// fileState is the per-file context of processLine: whether the current
// Host/Match block applies, and how Include resolves relative paths.
type fileState struct {
	active     *bool // shared with the including file, as readconf.c shares activep
	neverMatch bool  // inside an Include from an inactive block: parse only
	userConf   bool
	depth      int
}

// readFile reads one top-level config file. A missing file is an error
// only when required (the -F file). checkPerm is ssh's SSHCONF_CHECKPERM.
func (r *resolver) readFile(name string, userConf, required, checkPerm bool) error {
	active := true
	st := &fileState{active: &active, userConf: userConf}
	found, err := r.readFileState(name, st, checkPerm)
	if err != nil {
		return err
	}
	if !found && required {
		return fmt.Errorf("can't open user config file %s: %w", name, fs.ErrNotExist)
	}
	return nil
}

// readFileState reads one file; found is false when it does not exist.
// Like readconf.c, every line is checked even after a bad one, and the
// file fails as a whole, naming every bad line.
func (r *resolver) readFileState(name string, st *fileState, checkPerm bool) (found bool, err error) {
	if st.depth > maxIncludeDepth {
		return false, fatalError{fmt.Errorf("%s: too many recursive configuration includes", name)}
	}
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("can't open config file %s: %w", name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("stat config file %s: %w", name, err)
	}
	if checkPerm {
		if err := r.checkPerm(name, fi); err != nil {
			return false, err
		}
	}
	if fi.IsDir() {
		return true, nil // fopen succeeds on a directory and getline reads nothing
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), maxConfigLine)
	var bad []string
	for n := 1; sc.Scan(); n++ {
		where := fmt.Sprintf("%s line %d", name, n)
		if err := r.processLine(sc.Text(), where, st); err != nil {
			var fatal fatalError
			if errors.As(err, &fatal) {
				return true, err
			}
			bad = append(bad, err.Error())
		}
	}
	if err := sc.Err(); errors.Is(err, bufio.ErrTooLong) {
		return true, fmt.Errorf("read %s: a line is longer than %d bytes", name, maxConfigLine)
	} else if err != nil {
		return true, fmt.Errorf("read %s: %w", name, err)
	}
	if len(bad) > 0 {
		return true, fmt.Errorf("%s: terminating, %d bad configuration options: %s",
			name, len(bad), strings.Join(bad, "; "))
	}
	return true, nil
}

// fatalError is an error after which ssh stops reading at once (fatal()
// in readconf.c) rather than counting a bad line and going on.
type fatalError struct{ error }

func (e fatalError) Unwrap() error { return e.error }

// checkPerm is readconf.c's SSHCONF_CHECKPERM test: the file must belong to
// root or the user and be writable by nobody else. Debian's ssh also
// accepts a group-writable file whose group is the user's private group
// (same name as the user); sshvpn does the same so a config Debian's ssh
// reads is not refused here.
func (r *resolver) checkPerm(name string, fi fs.FileInfo) error {
	sys, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	uid := fmt.Sprint(sys.Uid)
	mode := fi.Mode().Perm()
	bad := sys.Uid != 0 && uid != r.env.uid
	if mode&0o002 != 0 {
		bad = true
	}
	if mode&0o020 != 0 && !(r.env.privateGroup != "" && fmt.Sprint(sys.Gid) == r.env.privateGroup) {
		bad = true
	}
	if bad {
		return fatalError{fmt.Errorf("bad owner or permissions on %s", name)}
	}
	return nil
}

// processLine handles one line; st is nil for a -o option.
func (r *resolver) processLine(line, where string, st *fileState) error {
	keyword, rest, ok := splitKeyword(line)
	if !ok {
		return nil
	}
	if rest == "" {
		return fmt.Errorf("%s: no argument after keyword %q", where, keyword)
	}
	kw, known := keywords[keyword]
	if !known {
		if pat := r.str("ignoreunknown", ""); pat == "" || matchPatternList(keyword, pat, true) != 1 {
			// ssh stops here ("Bad configuration option"). sshvpn warns
			// and goes on: a keyword newer than this reader, or a typo,
			// should not keep a VPN down, and the user sees it.
			r.warn("%s: unknown keyword %s ignored (ssh refuses it: Bad configuration option; IgnoreUnknown silences it)", where, keyword)
			return nil
		}
		kw = keyword0{kind: kIgnoredUnknown}
	}
	args, err := splitArgs(rest)
	if err != nil {
		return fmt.Errorf("%s: invalid quotes", where)
	}
	cmdline := st == nil
	switch kw.kind {
	case kHost, kMatch, kInclude:
		if cmdline {
			name := "Host"
			if kw.kind == kInclude {
				name = "Include"
			}
			return fmt.Errorf("%s: %s directive not supported as a command-line option", where, name)
		}
	}
	switch kw.kind {
	case kHost:
		return r.hostLine(args, where, st)
	case kMatch:
		m, err := r.matchLine(args, where)
		if err != nil {
			return err
		}
		*st.active = !st.neverMatch && m
		return nil
	case kInclude:
		return r.include(args, where, st)
	}
	active := cmdline || *st.active
	return r.keyword(keyword, kw, args, rest, where, active, st)
}

// hostLine evaluates a Host line (readconf.c oHost): the block applies
// when some pattern matches and no negated pattern does. Host compares
// case-sensitively with the host as typed on the first pass; the final
// pass sees the lower-cased HostName.
func (r *resolver) hostLine(args []string, where string, st *fileState) error {
	*st.active = false
	for _, a := range args {
		if a == "" {
			return fmt.Errorf("%s: keyword host empty argument", where)
		}
		if st.neverMatch {
			return nil
		}
		neg := strings.HasPrefix(a, "!")
		if neg {
			a = a[1:]
		}
		if matchPattern(r.host, a) {
			if neg {
				*st.active = false
				return nil
			}
			*st.active = true
		}
	}
	return nil
}

// include reads the files matching each glob in place (readconf.c
// oInclude). Paths expand %-tokens and ${ENV} (OpenSSH 9.4 and later; 9.2
// takes them literally, and sshvpn follows the newer grammar). Relative
// paths are relative to ~/.ssh for a user file and /etc/ssh for the system
// file. An Include inside an inactive block is parsed but applies nothing,
// and Host or Match lines in an included file do not leak out of it.
func (r *resolver) include(args []string, where string, st *fileState) error {
	for _, arg := range args {
		if arg == "" {
			return fmt.Errorf("%s: keyword include empty argument", where)
		}
		p, err := r.matchTokens().expandDollar(arg)
		if err != nil {
			return fatalError{fmt.Errorf("%s: Include %s: %w", where, arg, err)}
		}
		if strings.HasPrefix(p, "~") && !st.userConf {
			return fmt.Errorf("%s: bad include path %s", where, p)
		}
		if !strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "~") {
			if st.userConf {
				p = "~/.ssh/" + p
			} else {
				p = r.env.systemDir + "/" + p
			}
		}
		if strings.HasPrefix(p, "~") {
			if p, err = r.tildeExpand(p); err != nil {
				return fmt.Errorf("%s: Include %s: %w", where, arg, err)
			}
		}
		files, err := glob(p)
		if err != nil {
			return fmt.Errorf("%s: glob failed for %s: %w", where, p, err)
		}
		outer := *st.active
		for _, f := range files {
			sub := &fileState{
				active:     st.active,
				neverMatch: st.neverMatch || !outer,
				userConf:   st.userConf,
				depth:      st.depth + 1,
			}
			_, err := r.readFileState(f, sub, true)
			*st.active = outer
			if err != nil {
				// A bad line in an included file ends ssh at the end of
				// that file (fatal), not of the including one.
				var fatal fatalError
				if errors.As(err, &fatal) {
					return err
				}
				return fatalError{err}
			}
		}
	}
	return nil
}

// glob is glob(3) as ssh calls it (no GLOB_PERIOD, no braces): "*", "?"
// and "[...]" match within one path element, a leading "." must be matched
// explicitly, and the result is sorted. No match is not an error.
func glob(pattern string) ([]string, error) {
	if !hasMeta(pattern) {
		if _, err := os.Lstat(pattern); err != nil {
			return nil, nil
		}
		return []string{pattern}, nil
	}
	parts := strings.Split(pattern, "/")
	paths := []string{""}
	if parts[0] == "" {
		paths = []string{"/"}
		parts = parts[1:]
	}
	for i, part := range parts {
		last := i == len(parts)-1
		var next []string
		for _, dir := range paths {
			if part == "" {
				if dir != "/" && dir != "" {
					next = append(next, dir+"/")
				}
				continue
			}
			if !hasMeta(part) {
				p := joinGlob(dir, part)
				if _, err := os.Lstat(p); err == nil {
					next = append(next, p)
				}
				continue
			}
			if _, err := path.Match(part, ""); err != nil {
				// glob(3) takes a malformed bracket literally.
				p := joinGlob(dir, part)
				if _, err := os.Lstat(p); err == nil {
					next = append(next, p)
				}
				continue
			}
			d := dir
			if d == "" {
				d = "."
			}
			entries, err := os.ReadDir(d)
			if err != nil {
				continue
			}
			for _, e := range entries {
				name := e.Name()
				if strings.HasPrefix(name, ".") && !strings.HasPrefix(part, ".") {
					continue
				}
				if ok, _ := path.Match(part, name); !ok {
					continue
				}
				if !last && !e.IsDir() && e.Type()&fs.ModeSymlink == 0 {
					continue
				}
				next = append(next, joinGlob(dir, name))
			}
		}
		paths = next
		if len(paths) == 0 {
			return nil, nil
		}
	}
	sort.Strings(paths)
	return paths, nil
}

func joinGlob(dir, name string) string {
	switch {
	case dir == "":
		return name
	case strings.HasSuffix(dir, "/"):
		return dir + name
	}
	return dir + "/" + name
}

func hasMeta(s string) bool { return strings.ContainsAny(s, "*?[") }

// splitKeyword splits a config line into its lower-cased keyword and the
// rest, like readconf.c: trailing white space (and a form feed) is
// stripped, the keyword is taken by misc.c strdelim (white space or one
// "=", a double-quoted keyword loses its quotes) and the rest starts after
// the white space that follows. ok is false for a blank or comment line.
func splitKeyword(line string) (keyword, rest string, ok bool) {
	if i := strings.IndexByte(line, 0); i >= 0 {
		line = line[:i] // C string
	}
	line = strings.TrimRight(line, " \t\r\n\f")
	s := &line
	kw, more := strdelim(s)
	if kw == "" && more {
		kw, more = strdelim(s)
	}
	if kw == "" || kw[0] == '\n' || kw[0] == '#' {
		return "", "", false
	}
	if !more {
		return strings.ToLower(kw), "", true
	}
	return strings.ToLower(kw), strings.TrimLeft(*s, " \t\r\n"), true
}

// strdelim is misc.c strdelim_internal with split_equals: it returns the
// next token and advances *s past it, its delimiter and the white space (and
// at most one "=") after it. more is false when nothing follows.
func strdelim(s *string) (tok string, more bool) {
	str := *s
	i := strings.IndexAny(str, " \t\r\n\"=")
	if i < 0 {
		*s = ""
		return str, false
	}
	if str[i] == '"' {
		str = str[:i] + str[i+1:]
		j := strings.IndexByte(str[i:], '"')
		if j < 0 {
			*s = ""
			return "", false // no matching quote: strdelim returns NULL
		}
		tok = str[:i+j]
		*s = strings.TrimLeft(str[i+j+1:], " \t\r\n")
		return tok, true
	}
	equals := str[i] == '='
	tok = str[:i]
	str = strings.TrimLeft(str[i+1:], " \t\r\n")
	if !equals && strings.HasPrefix(str, "=") {
		str = strings.TrimLeft(str[1:], " \t\r\n")
	}
	*s = str
	return tok, true
}

// splitArgs is misc.c's argv_split with terminate_on_comment: white space
// separates, single and double quotes group, a backslash escapes a quote,
// a backslash or (outside quotes) a space, and "#" at the start of an
// argument ends the line.
func splitArgs(s string) ([]string, error) {
	var args []string
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' || s[i] == '\t' {
			continue
		}
		if s[i] == '#' {
			break
		}
		var b bytes.Buffer
		var quote byte
	token:
		for ; i < len(s); i++ {
			c := s[i]
			switch {
			case c == '\\' && i+1 < len(s) && (s[i+1] == '\'' || s[i+1] == '"' ||
				s[i+1] == '\\' || (quote == 0 && s[i+1] == ' ')):
				i++
				b.WriteByte(s[i])
			case quote == 0 && (c == ' ' || c == '\t'):
				break token
			case quote == 0 && (c == '"' || c == '\''):
				quote = c
			case quote != 0 && c == quote:
				quote = 0
			default:
				b.WriteByte(c)
			}
		}
		if i >= len(s) && quote != 0 {
			return nil, errors.New("invalid quotes")
		}
		args = append(args, b.String())
	}
	return args, nil
}
