package sshclient

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// maxIncludeDepth is readconf.c's READCONF_MAX_DEPTH.
const maxIncludeDepth = 16

// setting is one stored keyword value and where it came from.
type setting struct {
	args  []string
	where string // "file:line", "-p", "command-line option -o", ...
}

// resolver holds the state of one resolution: the values obtained so far
// (first wins) and what Host and Match see.
type resolver struct {
	env          env
	originalHost string // Match originalhost and %n
	host         string // what Host and Match host see
	final        bool   // the second pass requested by Match final
	wantFinal    bool
	vals         map[string]setting
	identities   []setting // IdentityFile accumulates
	notes        []string
}

func newResolver(e env, host string) *resolver {
	h := strings.ToLower(host)
	return &resolver{env: e, originalHost: h, host: h, vals: map[string]setting{}}
}

// store keeps the first value obtained for key; IdentityFile accumulates.
func (r *resolver) store(key string, args []string, where string) {
	if key == "identityfile" {
		r.identities = append(r.identities, setting{args, where})
		return
	}
	if _, ok := r.vals[key]; !ok {
		r.vals[key] = setting{args, where}
	}
}

func (r *resolver) note(format string, a ...any) {
	n := fmt.Sprintf(format, a...)
	for _, x := range r.notes {
		if x == n {
			return // the final pass reads every line again
		}
	}
	r.notes = append(r.notes, n)
}

// fileState is the per-file context of processLine: whether the current
// Host/Match block applies, and how Include resolves relative paths.
type fileState struct {
	active     bool
	neverMatch bool // inside an Include from an inactive block: parse only
	userConf   bool
	depth      int
}

// readFile reads one config file. A missing file is an error only when
// required (the -F file).
func (r *resolver) readFile(path string, userConf, required bool) error {
	st := &fileState{active: true, userConf: userConf}
	return r.readFileState(path, st, required)
}

func (r *resolver) readFileState(path string, st *fileState, required bool) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !required {
		return nil
	}
	if err != nil {
		return fmt.Errorf("can't open config file %s: %w", path, err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		where := fmt.Sprintf("%s:%d", path, n)
		if err := r.processLine(sc.Text(), where, st); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

// processLine handles one line; st is nil for a -o option.
func (r *resolver) processLine(line, where string, st *fileState) error {
	keyword, args, err := splitLine(line)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	if keyword == "" {
		return nil
	}
	if len(args) == 0 {
		return fmt.Errorf("%s: no argument after keyword %q", where, keyword)
	}
	cmdline := st == nil
	switch keyword {
	case "host", "match", "include":
		if cmdline {
			return fmt.Errorf("%s: %s directive not supported as a command-line option", where, keyword)
		}
	}
	switch keyword {
	case "host":
		st.active = !st.neverMatch && hostLineMatches(r.host, args)
		return nil
	case "match":
		m, err := r.matchLine(args, where)
		if err != nil {
			return err
		}
		st.active = !st.neverMatch && m
		return nil
	case "include":
		return r.include(args, where, st)
	}
	return r.keyword(keyword, args, where, cmdline || st.active)
}

// include reads the files matching each glob in place. Relative paths are
// relative to ~/.ssh for the user file and /etc/ssh for the system file.
// As in readconf.c, an Include inside an inactive block is parsed but
// applies nothing, and Match blocks in it do not leak out.
func (r *resolver) include(args []string, where string, st *fileState) error {
	if st.depth >= maxIncludeDepth {
		return fmt.Errorf("%s: too many recursive configuration includes", where)
	}
	for _, arg := range args {
		p := arg
		if strings.HasPrefix(p, "~") {
			if !st.userConf {
				return fmt.Errorf("%s: bad include path %s", where, p)
			}
			p = r.expandTilde(p)
		} else if !filepath.IsAbs(p) {
			base := r.env.systemDir
			if st.userConf {
				base = filepath.Join(r.env.home, ".ssh")
			}
			p = filepath.Join(base, p)
		}
		files, err := filepath.Glob(p)
		if err != nil {
			return fmt.Errorf("%s: Include %s: %w", where, arg, err)
		}
		sort.Strings(files)
		for _, f := range files {
			sub := &fileState{
				active:     st.active,
				neverMatch: st.neverMatch || !st.active,
				userConf:   st.userConf,
				depth:      st.depth + 1,
			}
			if err := r.readFileState(f, sub, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// splitLine splits a config line into its lower-cased keyword and its
// arguments like readconf.c: the keyword ends at white space or one "=",
// arguments are split by argv_split (quotes, backslash escapes, "#" starts
// a comment).
func splitLine(line string) (string, []string, error) {
	s := strings.TrimRight(line, " \t\r\n\f")
	s = strings.TrimLeft(s, " \t")
	if s == "" || s[0] == '#' {
		return "", nil, nil
	}
	end := strings.IndexAny(s, " \t=")
	if end < 0 {
		return strings.ToLower(s), nil, nil
	}
	keyword := strings.ToLower(s[:end])
	rest := strings.TrimLeft(s[end:], " \t")
	if strings.HasPrefix(rest, "=") {
		rest = strings.TrimLeft(rest[1:], " \t")
	}
	args, err := splitArgs(rest)
	return keyword, args, err
}

// splitArgs is misc.c's argv_split with terminate_on_comment.
func splitArgs(s string) ([]string, error) {
	var args []string
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' || s[i] == '\t' {
			continue
		}
		if s[i] == '#' {
			break
		}
		var b strings.Builder
		var quote byte
		for ; i < len(s); i++ {
			c := s[i]
			switch {
			case c == '\\' && i+1 < len(s) && (s[i+1] == '\'' || s[i+1] == '"' ||
				s[i+1] == '\\' || (quote == 0 && s[i+1] == ' ')):
				i++
				b.WriteByte(s[i])
			case quote == 0 && (c == ' ' || c == '\t'):
				goto done
			case quote == 0 && (c == '"' || c == '\''):
				quote = c
			case quote != 0 && c == quote:
				quote = 0
			default:
				b.WriteByte(c)
			}
		}
		if quote != 0 {
			return nil, errors.New("invalid quotes")
		}
	done:
		args = append(args, b.String())
	}
	return args, nil
}
