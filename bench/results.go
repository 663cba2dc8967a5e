package bench

import (
	"fmt"
	"os"
	"path/filepath"
)

// The markers in README.md between which the latest tables go.
const (
	readmeBegin = "<!-- latest results: written by BenchmarkPaths -->"
	readmeEnd   = "<!-- end of latest results -->"
)

// WriteResults writes r's markdown, JSON and chart under dir/results/ and
// returns the paths written. A full run writes latest.* and splices the
// markdown into dir/README.md; a partial one (BENCH=quick, a BENCH_*
// filter) writes dev.* only, so that development runs never replace the
// published figures. dated adds a copy of the JSON named by the run's
// start, the history of every full run.
func WriteResults(dir string, r Run, partial, dated bool) ([]string, error) {
	js, err := JSON(r)
	if err != nil {
		return nil, err
	}
	md := Markdown(r)
	base := "latest"
	if partial {
		base = "dev"
	}
	files := []struct {
		name string
		data []byte
	}{{base + ".md", []byte(md)}, {base + ".json", js}, {base + ".svg", []byte(SVG(r))}}
	if dated {
		files = append(files, struct {
			name string
			data []byte
		}{r.Started.UTC().Format("2006-01-02T150405Z") + ".json", js})
	}
	res := filepath.Join(dir, "results")
	if err := os.MkdirAll(res, 0o755); err != nil {
		return nil, err
	}
	var written []string
	for _, f := range files {
		p := filepath.Join(res, f.name)
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			return written, err
		}
		written = append(written, p)
	}
	if partial {
		return written, nil
	}
	readme := filepath.Join(dir, "README.md")
	doc, err := os.ReadFile(readme)
	if err != nil {
		return written, err
	}
	out, err := Splice(string(doc), readmeBegin, readmeEnd, md)
	if err != nil {
		return written, fmt.Errorf("%s: %w", readme, err)
	}
	return append(written, readme), os.WriteFile(readme, []byte(out), 0o644)
}
