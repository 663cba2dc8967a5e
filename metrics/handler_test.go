package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/status"
)

func TestHandler(t *testing.T) {
	defer func(d time.Duration) { freshFor = d }(freshFor)
	freshFor = 0 // every scrape renders
	var calls atomic.Int64
	srv := httptest.NewServer(Handler(func() status.Report {
		r := fullGateway()
		// Each scrape asks for a new Report.
		r.Gateway.Handshaking = int(calls.Add(1))
		return *r
	}))
	defer srv.Close()

	get := func(method, path string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(body)
	}

	for want := 1; want <= 2; want++ {
		resp, body := get("GET", "/metrics")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /metrics: %s", resp.Status)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
			t.Errorf("Content-Type %q", ct)
		}
		fams := parse(t, []byte(body))
		if got := value(t, fams, "sshvpn_handshaking"); got != float64(want) {
			t.Errorf("scrape %d: sshvpn_handshaking = %v: not this scrape's Report", want, got)
		}
		if _, ok := fams["sshvpn_build_info"]; !ok {
			t.Error("no sshvpn_build_info")
		}
	}

	resp, body := get("HEAD", "/metrics")
	if resp.StatusCode != http.StatusOK || body != "" || resp.ContentLength <= 0 {
		t.Errorf("HEAD /metrics: %s, %d bytes, length %d", resp.Status, len(body), resp.ContentLength)
	}
	resp, body = get("GET", "/")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `href="/metrics"`) {
		t.Errorf("GET /: %s %q", resp.Status, body)
	}
	for _, path := range []string{"/metrics/", "/debug/pprof/", "/status", "/index.html"} {
		if resp, _ := get("GET", path); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %s, want 404", path, resp.Status)
		}
	}
	for _, m := range []string{"POST", "PUT", "DELETE"} {
		if resp, _ := get(m, "/metrics"); resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s /metrics: %s, want 405", m, resp.Status)
		}
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("report called %d times, want once per scrape of /metrics (3)", n)
	}
}

// Scrapes in a tight loop or at once take one Report per freshFor: each
// takes the gateway's locks.
func TestHandlerRendersAtMostOncePerFreshFor(t *testing.T) {
	defer func(d time.Duration) { freshFor = d }(freshFor)
	freshFor = time.Hour
	var calls atomic.Int64
	srv := httptest.NewServer(Handler(func() status.Report {
		calls.Add(1)
		return *fullGateway()
	}))
	defer srv.Close()
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			resp, err := srv.Client().Get(srv.URL + "/metrics")
			if err != nil {
				t.Error(err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "sshvpn_connections") {
				t.Errorf("scrape: %s %.80q", resp.Status, body)
			}
		})
	}
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Errorf("20 scrapes within freshFor took %d Reports, want 1", n)
	}
}
