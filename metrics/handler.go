package metrics

import (
	"net/http"
	"strconv"

	"github.com/sshvpn/sshvpn/status"
)

// ContentType is the text exposition format's media type.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// index is the page on /, for a person who opens the address in a browser.
const index = `<!DOCTYPE html>
<title>sshvpn</title>
<p>sshvpn's metrics are at <a href="/metrics">/metrics</a>, in Prometheus text format.
`

// Handler serves /metrics, rendered from report at each request, and a
// short index on /; every other path is not found, every other method than
// GET and HEAD not allowed.
func Handler(report func() status.Report) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		r := report()
		page := render(&r, buildInfo())
		h := w.Header()
		h.Set("Content-Type", ContentType)
		h.Set("Content-Length", strconv.Itoa(len(page)))
		h.Set("Cache-Control", "no-store") // every scrape is a new snapshot
		w.Write(page)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(index))
	})
	return mux
}
