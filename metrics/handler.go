package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/sshvpn/sshvpn/status"
)

// ContentType is the text exposition format's media type.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// index is the page on /, for a person who opens the address in a browser.
const index = `<!DOCTYPE html>
<title>sshvpn</title>
<p>sshvpn's metrics are at <a href="/metrics">/metrics</a>, in Prometheus text format.
`

// freshFor is how long a rendered page serves every scrape that comes:
// a Report takes the gateway's locks, so scrapes in a tight loop (or many
// at once) must not take them more often than this.
var freshFor = 250 * time.Millisecond

// Handler serves /metrics, rendered from report (at most once per
// freshFor, however many scrapes come), and a short index on /; every
// other path is not found, every other method than GET and HEAD not
// allowed.
func Handler(report func() status.Report) http.Handler {
	var (
		mu   sync.Mutex // one render at a time; the others wait for it
		page []byte
		at   time.Time
	)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		if page == nil || time.Since(at) >= freshFor {
			r := report()
			page, at = render(&r, buildInfo()), time.Now()
		}
		page := page
		mu.Unlock()
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
