package status

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Bytes says n in binary units, as wg show does: "1.21 MiB".
func Bytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n), 0
	for v >= unit && i < len(binaryUnits)-1 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.2f %s", v, binaryUnits[i])
}

var binaryUnits = [...]string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}

// Ago says how long before now t was, to the second: "3s ago",
// "2m5s ago", "1h2m ago", "3d4h ago"; "never" for the zero time.
func Ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return Age(now.Sub(t)) + " ago"
}

// Age says a duration to the second, with its two largest units.
func Age(d time.Duration) string {
	d = max(d.Round(time.Second), 0)
	days, h, m, s := d/(24*time.Hour), d/time.Hour%24, d/time.Minute%60, d/time.Second%60
	switch {
	case days > 0:
		return fmt.Sprintf("%dd%dh", days, h)
	case h > 0:
		return fmt.Sprintf("%dh%dm", h, m)
	case m > 0:
		return fmt.Sprintf("%dm%ds", m, s)
	}
	return fmt.Sprintf("%ds", s)
}

// RTT says a round trip to a tenth of a millisecond, or "-" before the
// first.
func RTT(d Duration) string {
	if d <= 0 {
		return "-"
	}
	return time.Duration(d).Round(100 * time.Microsecond).String()
}

// byName lists a counter map as "name n, name n", in name order.
func byName(m map[string]uint64) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", k, m[k])
	}
	return b.String()
}

// limit says a Usage as "used/limit" ("used/-" without a limit), and
// what it refused.
func limit(u Usage, unit func(int64) string) string {
	s := unit(u.Used) + "/"
	if u.Limit > 0 {
		s += unit(u.Limit)
	} else {
		s += "-"
	}
	if u.Refused > 0 {
		s += fmt.Sprintf(" (%d refused)", u.Refused)
	}
	return s
}

func count(n int64) string { return fmt.Sprint(n) }

func memory(n int64) string { return Bytes(uint64(max(n, 0))) }

func joinAll[T fmt.Stringer](xs []T, sep string) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = x.String()
	}
	return strings.Join(s, sep)
}

// addresses says a tunnel's addresses in one line: the given ones, then
// the claimed and leased ones marked so.
func addresses(t *Tunnel) string {
	var parts []string
	if len(t.Addresses) > 0 {
		parts = append(parts, joinAll(t.Addresses, ", "))
	}
	if len(t.Claimed) > 0 {
		parts = append(parts, "claimed "+joinAll(t.Claimed, ", "))
	}
	if len(t.Leased) > 0 {
		parts = append(parts, "leased "+joinAll(t.Leased, ", "))
	}
	if len(parts) == 0 {
		return "(none)"
	}
	return strings.Join(parts, "; ")
}
