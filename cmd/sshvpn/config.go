package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"syscall"
)

// A serve --config file has sshd_config's shape: one "Keyword value" per
// line, the keyword and value apart by whitespace or "=", # comments and
// blank lines, values in double quotes where they hold spaces. Keywords
// are serve's long flag names, compared without case and dashes, so that
// max-startups and sshd's MaxStartups both name --max-startups.
//
// Flags on the command line win over the file: a repeatable flag given
// there replaces the file's values entirely rather than adding to them,
// so that the command line alone says what the gateway runs with.

// repeatable are serve's flags that take several values, each line (or
// flag) adding to the list; any other keyword given twice is an error.
var repeatable = map[string]bool{
	"tun-address": true, "route": true, "dns": true, "dns-domain": true,
	"subnet": true, "dns-address": true, "allow": true, "deny": true,
}

// notInFile are flags that make no sense inside a config file.
var notInFile = map[string]string{
	"config": "a config file names no other",
	"check":  "give --check on the command line",
}

// configError is one problem of a config file, at its line.
type configError struct {
	file string
	line int
	err  error
}

func (e *configError) Error() string { return fmt.Sprintf("%s:%d: %v", e.file, e.line, e.err) }
func (e *configError) Unwrap() error { return e.err }

// configEntry is one keyword's line.
type configEntry struct {
	line  int
	name  string // the flag's name
	value string
}

// readConfig reads path's entries for fs's flags. It returns every
// problem it found, each naming the file and line; a file it cannot use
// at all (missing, unsafe) is the only error then.
func readConfig(path string, fs *flag.FlagSet) ([]configEntry, []error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, []error{fmt.Errorf("--config: %w", err)}
	}
	defer f.Close()
	if err := checkConfigModes(f, path); err != nil {
		return nil, []error{err}
	}
	return parseConfig(path, f, fs)
}

// checkConfigModes refuses a file another user could have written, as
// sshd's StrictModes does: its settings decide who gets in and where.
func checkConfigModes(f *os.File, path string) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("--config %s: not a regular file", path)
	}
	if m := fi.Mode().Perm(); m&0o022 != 0 {
		return fmt.Errorf("--config %s: writable by group or others (mode %04o), so anyone who can write it decides who gets in: chmod go-w %s", path, m, path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("--config %s: owned by uid %d, neither root nor this user (uid %d): chown it", path, st.Uid, os.Geteuid())
	}
	return nil
}

// parseConfig reads r, a config file named path, into entries for fs's
// flags, and returns every problem with its line.
func parseConfig(path string, r io.Reader, fs *flag.FlagSet) ([]configEntry, []error) {
	names := keywords(fs)
	var entries []configEntry
	var errs []error
	first := map[string]int{} // flag name -> its first line
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		fail := func(err error) { errs = append(errs, &configError{path, n, err}) }
		kw, value, err := splitConfigLine(sc.Text())
		if err != nil {
			fail(err)
			continue
		}
		if kw == "" {
			continue
		}
		name, ok := names[normalKeyword(kw)]
		if !ok {
			fail(fmt.Errorf("unknown keyword %q; the nearest is %s", kw, nearestKeyword(kw, names)))
			continue
		}
		if why, no := notInFile[name]; no {
			fail(fmt.Errorf("%s: %s", kw, why))
			continue
		}
		if at, seen := first[name]; seen && !repeatable[name] {
			fail(fmt.Errorf("%s given again (first at line %d); only %s take several values", kw, at, repeatableNames()))
			continue
		}
		first[name] = n
		if b, ok := fs.Lookup(name).Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			if value, err = configBool(value); err != nil {
				fail(fmt.Errorf("%s: %w", kw, err))
				continue
			}
		}
		entries = append(entries, configEntry{n, name, value})
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("--config %s: %w", path, err))
	}
	return entries, errs
}

// splitConfigLine splits a line into its keyword and value as sshd_config
// does; a blank line or a comment gives an empty keyword.
func splitConfigLine(line string) (kw, value string, err error) {
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '#' {
		return "", "", nil
	}
	end := strings.IndexAny(line, " \t=")
	if end < 0 {
		return "", "", fmt.Errorf("%s has no value", line)
	}
	kw, rest := line[:end], strings.TrimLeft(line[end:], " \t")
	if strings.HasPrefix(rest, "=") {
		rest = strings.TrimLeft(rest[1:], " \t")
	}
	value, rest, err = configValue(rest)
	switch {
	case err != nil:
		return "", "", fmt.Errorf("%s: %w", kw, err)
	case rest != "" && rest[0] != '#':
		return "", "", fmt.Errorf("%s takes one value, got more: %q (quote a value that holds spaces)", kw, rest)
	}
	return kw, value, nil
}

// configValue reads one value off s, unquoting a double-quoted one (where
// \" and \\ are escapes), and returns what follows it, trimmed.
func configValue(s string) (value, rest string, err error) {
	if s == "" || s[0] == '#' {
		return "", "", errors.New("no value")
	}
	if s[0] != '"' {
		end := strings.IndexAny(s, " \t")
		if end < 0 {
			return s, "", nil
		}
		return s[:end], strings.TrimLeft(s[end:], " \t"), nil
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\'):
			i++
			b.WriteByte(s[i])
		case c == '"':
			rest = s[i+1:]
			if rest != "" && rest[0] != ' ' && rest[0] != '\t' {
				return "", "", fmt.Errorf("text right after the closing quote: %q", rest)
			}
			return b.String(), strings.TrimLeft(rest, " \t"), nil
		default:
			b.WriteByte(c)
		}
	}
	return "", "", errors.New("unterminated quote")
}

// configBool is a boolean value as sshd_config writes it, for the flag
// package.
func configBool(v string) (string, error) {
	switch strings.ToLower(v) {
	case "yes", "true":
		return "true", nil
	case "no", "false":
		return "false", nil
	}
	return "", fmt.Errorf("%q is not yes, no, true or false", v)
}

// keywords maps every flag of fs, by its normalKeyword, to its name.
func keywords(fs *flag.FlagSet) map[string]string {
	m := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) { m[normalKeyword(f.Name)] = f.Name })
	return m
}

// normalKeyword is a keyword without case and dashes: MaxStartups,
// max-startups and maxstartups are one.
func normalKeyword(kw string) string {
	return strings.ToLower(strings.ReplaceAll(kw, "-", ""))
}

// nearestKeyword is the flag name whose keyword is closest to kw.
func nearestKeyword(kw string, names map[string]string) string {
	k := normalKeyword(kw)
	best, bestD := "", -1
	for norm, name := range names {
		if _, no := notInFile[name]; no {
			continue
		}
		if d := editDistance(k, norm); bestD < 0 || d < bestD || d == bestD && name < best {
			best, bestD = name, d
		}
	}
	return best
}

func repeatableNames() string {
	names := slices.Sorted(maps.Keys(repeatable))
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// applyConfig sets the file's entries on fs, but not the flags given on
// the command line (set), which win. It returns every value a flag
// refused, at its line.
func applyConfig(path string, entries []configEntry, fs *flag.FlagSet, set map[string]bool) []error {
	var errs []error
	for _, e := range entries {
		if set[e.name] {
			continue
		}
		if err := fs.Set(e.name, e.value); err != nil {
			errs = append(errs, &configError{path, e.line, fmt.Errorf("bad value %q for %s: %w", e.value, e.name, err)})
		}
	}
	return errs
}

// sortByLine orders a file's problems by line, the file's own first.
func sortByLine(errs []error) []error {
	line := func(err error) int {
		if ce, ok := errors.AsType[*configError](err); ok {
			return ce.line
		}
		return 0
	}
	slices.SortStableFunc(errs, func(a, b error) int { return line(a) - line(b) })
	return errs
}
