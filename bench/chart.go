package bench

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// SVG draws the median throughput of every configuration as grouped bars,
// one panel per profile (each with its own scale: a lossy 40 ms path moves
// a hundredth of what a veth does), one group per test, a whisker from the
// fastest to the slowest round. Written by hand with fmt so the harness
// needs no plotting dependency; a browser or GitHub renders it as is.
func SVG(r Run) string {
	const (
		width   = 1040
		left    = 64
		right   = 16
		plotH   = 220
		titleH  = 34
		labelsH = 30
		gap     = 18
		legRow  = 18
	)
	colors := configColors(r)
	legendRows := (len(colors.order) + 4) / 5
	legendH := legendRows*legRow + 12
	panelH := titleH + plotH + labelsH + gap
	height := legendH + panelH*len(r.Profiles) + 8
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n",
		width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	for i, name := range colors.order {
		x := left + (i%5)*190
		y := 8 + (i/5)*legRow
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n",
			x, y, colors.of[name], x+16, y+10, esc(name))
	}
	for i, p := range r.Profiles {
		top := legendH + i*panelH
		panel(&b, p, colors, left, top+titleH, width-left-right, plotH)
		omit := ""
		if p.Omit > 0 {
			omit = fmt.Sprintf(" -O %d", p.Omit)
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="13" font-weight="bold">%s — %s (OpenSSH %s, median of %d rounds, iperf3 -t %d%s)</text>`+"\n",
			left, top+titleH-12, esc(p.Name), esc(p.Desc), esc(p.OpenSSH), p.Rounds, p.Secs, omit)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// palette holds distinguishable colours (Tableau 10, then eight more):
// one per row of a default run, so that no two rows share a colour.
var palette = []string{"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
	"#b07aa1", "#ff9da7", "#9c755f", "#bab0ac", "#1f77b4", "#8c564b",
	"#17becf", "#bcbd22", "#7f7f7f", "#e377c2", "#393b79", "#637939"}

// colorMap gives each configuration the same colour in every panel.
type colorMap struct {
	order []string
	of    map[string]string
}

func configColors(r Run) colorMap {
	m := colorMap{of: map[string]string{}}
	for _, p := range r.Profiles {
		for _, c := range p.Configs {
			if _, ok := m.of[c.Name]; !ok {
				m.of[c.Name] = palette[len(m.order)%len(palette)]
				m.order = append(m.order, c.Name)
			}
		}
	}
	return m
}

// panel draws one profile's axes and bars into the box (x, y, w, h). The
// scale is logarithmic: the rows span three orders of magnitude (the bare
// path against a stock tunnel), and on a log axis equal ratios are equal
// distances, which is what the comparison is about. Each bar carries its
// median as a label, so the chart reads without the table.
func panel(b *strings.Builder, p Profile, colors colorMap, x, y, w, h int) {
	sums := make([]Summary, len(p.Configs))
	lo, hi := math.Inf(1), 0.0
	for i, c := range p.Configs {
		sums[i] = Summarize(c)
		for _, s := range sums[i].Tput {
			if s.Min > 0 {
				lo = math.Min(lo, s.Min)
			}
			hi = math.Max(hi, s.Max)
		}
	}
	if hi == 0 {
		lo, hi = 1, 10
	}
	// From a whole decade up to room above the tallest whisker for its
	// label (about 0.6 of a decade at this height).
	d0, d1 := math.Floor(math.Log10(lo)), math.Log10(hi)+0.6
	yOf := func(v float64) float64 {
		f := (math.Log10(math.Max(v, math.Pow(10, d0))) - d0) / (d1 - d0)
		return float64(y+h) - f*float64(h)
	}
	for d := d0; d <= d1; d++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, d)
			if math.Log10(v) > d1 {
				break
			}
			yy := yOf(v)
			stroke := "#eee"
			if m == 1 {
				stroke = "#ccc"
			}
			fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s"/><text x="%d" y="%.1f" text-anchor="end" fill="#555">%s</text>`+"\n",
				x, yy, x+w, yy, stroke, x-6, yy+4, axisLabel(v))
		}
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle" transform="rotate(-90 %d %d)">Mbit/s (log scale)</text>`+"\n",
		x-48, y+h/2, x-48, y+h/2)
	if len(p.Tests) == 0 || len(p.Configs) == 0 {
		return
	}
	groupW := float64(w) / float64(len(p.Tests))
	barW := groupW * 0.84 / float64(len(p.Configs))
	for g, t := range p.Tests {
		gx := float64(x) + float64(g)*groupW + groupW*0.08
		for i, c := range p.Configs {
			s, ok := sums[i].Tput[t]
			if !ok || !s.Valid() {
				continue
			}
			bx := gx + float64(i)*barW
			top := yOf(s.Med)
			fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s, %s: %s Mbit/s (%s–%s)</title></rect>`+"\n",
				bx, top, barW-1, float64(y+h)-top, colors.of[c.Name],
				esc(c.Name), esc(TestLabel(t)), num(s.Med), num(s.Min), num(s.Max))
			cx := bx + (barW-1)/2
			if s.N > 1 {
				fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333"/>`+"\n", cx, yOf(s.Min), cx, yOf(s.Max))
			}
			ly := math.Min(top, yOf(s.Max)) - 3
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="9" transform="rotate(-90 %.1f %.1f)">%s</text>`+"\n",
				cx+3, ly, cx+3, ly, num(s.Med))
		}
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n",
			float64(x)+(float64(g)+0.5)*groupW, y+h+18, esc(TestLabel(t)))
	}
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`+"\n", x, y+h, x+w, y+h)
}

// axisLabel prints a gridline's value short: 0.5, 20, 2k, 10k.
func axisLabel(v float64) string {
	suffix := ""
	if v >= 1000 {
		v, suffix = v/1000, "k"
	}
	s := strings.TrimRight(fmt.Sprintf("%.3f", v), "0")
	return strings.TrimSuffix(s, ".") + suffix
}

func esc(s string) string { return html.EscapeString(s) }
