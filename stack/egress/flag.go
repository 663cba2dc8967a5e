package egress

import (
	"flag"
	"strings"
)

// Rules is one ordered list that --allow and --deny both append to, so that
// first-match order follows the command line across the two flags.
type Rules []Rule

// Flag returns a flag.Value that parses each value as a rule with the
// verdict allow and appends it to l.
func (l *Rules) Flag(allow bool) flag.Value { return ruleFlag{list: l, allow: allow} }

type ruleFlag struct {
	list  *Rules
	allow bool
}

// String lists the rules of this flag's verdict. The flag package calls it
// on a zero ruleFlag too, to tell whether a default is set.
func (f ruleFlag) String() string {
	if f.list == nil {
		return ""
	}
	var s []string
	for _, r := range *f.list {
		if r.Allow == f.allow {
			s = append(s, r.String())
		}
	}
	return strings.Join(s, ",")
}

func (f ruleFlag) Set(s string) error {
	r, err := ParseRule(s, f.allow)
	if err != nil {
		return err
	}
	*f.list = append(*f.list, r)
	return nil
}
