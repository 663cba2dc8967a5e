package metrics

import (
	"strconv"
	"strings"
)

// Metric types of the text format.
const (
	counter = "counter"
	gauge   = "gauge"
)

// text accumulates one exposition. Families go out in the order they are
// begun, each with its HELP and TYPE lines, and the caller keeps a
// family's samples together and in a stable order: the format requires the
// first, scrapes compare better with the second.
type text struct {
	b []byte
}

// family begins the family name.
func (t *text) family(name, typ, help string) {
	t.b = append(t.b, "# HELP "...)
	t.b = append(t.b, name...)
	t.b = append(t.b, ' ')
	t.b = appendEscaped(t.b, help, false)
	t.b = append(t.b, "\n# TYPE "...)
	t.b = append(t.b, name...)
	t.b = append(t.b, ' ')
	t.b = append(t.b, typ...)
	t.b = append(t.b, '\n')
}

// uint writes a sample of an integer; labels are name, value pairs.
func (t *text) uint(name string, v uint64, labels ...string) {
	t.labels(name, labels)
	t.b = strconv.AppendUint(t.b, v, 10)
	t.b = append(t.b, '\n')
}

// int writes a sample of a signed integer.
func (t *text) int(name string, v int64, labels ...string) {
	t.labels(name, labels)
	t.b = strconv.AppendInt(t.b, v, 10)
	t.b = append(t.b, '\n')
}

// float writes a sample of a real number; Go writes the infinities and NaN
// as the format spells them (+Inf, -Inf, NaN).
func (t *text) float(name string, v float64, labels ...string) {
	t.labels(name, labels)
	t.b = strconv.AppendFloat(t.b, v, 'f', -1, 64)
	t.b = append(t.b, '\n')
}

// labels writes a sample's name and labels, up to its value.
func (t *text) labels(name string, labels []string) {
	if len(labels)%2 != 0 {
		panic("metrics: labels of " + name + " are not name, value pairs")
	}
	t.b = append(t.b, name...)
	if len(labels) > 0 {
		t.b = append(t.b, '{')
		for i := 0; i < len(labels); i += 2 {
			if i > 0 {
				t.b = append(t.b, ',')
			}
			t.b = append(t.b, labels[i]...)
			t.b = append(t.b, `="`...)
			t.b = appendEscaped(t.b, labels[i+1], true)
			t.b = append(t.b, '"')
		}
		t.b = append(t.b, '}')
	}
	t.b = append(t.b, ' ')
}

// appendEscaped escapes s as the format wants it: a backslash and a line
// feed in HELP text, and a double quote as well in a label value.
func appendEscaped(b []byte, s string, quote bool) []byte {
	if !strings.ContainsAny(s, "\\\n\"") {
		return append(b, s...)
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b = append(b, `\\`...)
		case c == '\n':
			b = append(b, `\n`...)
		case c == '"' && quote:
			b = append(b, `\"`...)
		default:
			b = append(b, c)
		}
	}
	return b
}
