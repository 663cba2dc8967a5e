package main

import (
	"flag"
	"strings"
)

// nearest returns the candidate a mistyped name most likely meant: the
// one a few edits away (fewer for short names, so that unrelated words are
// not offered), or else the only one it begins. It returns "" when none
// is near.
func nearest(name string, candidates []string) string {
	best, bestDist := "", len(name)+1
	var prefixed []string
	for _, c := range candidates {
		if len(c) < 2 { // one-letter flags are ssh's: nothing to spell
			continue
		}
		if d := editDistance(name, c); d < bestDist {
			best, bestDist = c, d
		}
		if len(name) >= 3 && strings.HasPrefix(c, name) {
			prefixed = append(prefixed, c)
		}
	}
	if bestDist <= min(3, max(1, len(name)/4)) {
		return best
	}
	if len(prefixed) == 1 {
		return prefixed[0]
	}
	return ""
}

// nearestFlag is nearest over fs's flags.
func nearestFlag(fs *flag.FlagSet, name string) string {
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	return nearest(name, names)
}

// editDistance is the Levenshtein distance between a and b, in bytes:
// flag and command names are ASCII.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			sub := prev[j-1]
			if a[i-1] != b[j-1] {
				sub++
			}
			cur[j] = min(sub, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
