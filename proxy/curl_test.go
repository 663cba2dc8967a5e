package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// origin is a real HTTP server on loopback: it answers with the method,
// the path, the Host it saw, the body's length, and whether any Proxy-*
// header reached it.
func origin(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		leaked := ""
		for k := range r.Header {
			if strings.HasPrefix(k, "Proxy-") {
				leaked += " leaked:" + k
			}
		}
		fmt.Fprintf(w, "%s %s host=%s body=%d%s\n", r.Method, r.URL.Path, r.Host, n, leaked)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// curl runs the real curl with a clean environment (no *_proxy variables)
// and returns its stdout; -w appends the status code.
func curl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	path := nstest.RequireTool(t, "curl")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, append([]string{"-sS", "--max-time", "10", "-w", " code=%{http_code}"}, args...)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir()}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%v: %s", err, stderr.String())
	}
	return string(out), nil
}

func TestCurlThroughProxy(t *testing.T) {
	d := &recordingDialer{to: origin(t)}
	s := NewServer(Config{Dial: d.Dial, SOCKS: true, HTTP: true})
	addr := serve(t, s)
	body := strings.Repeat("x", 100<<10) // past curl's Expect: 100-continue threshold
	for _, tc := range []struct {
		name string
		args []string
		want string
		dest string
	}{
		{"socks4a", []string{"--socks4a", addr, "http://four.example.invalid/a"}, "GET /a host=four.example.invalid body=0", "four.example.invalid:80"},
		{"socks4", []string{"--socks4", addr, "http://198.18.0.5/s4"}, "GET /s4 host=198.18.0.5 body=0", "198.18.0.5:80"},
		{"socks5-hostname", []string{"--socks5-hostname", addr, "http://five.example.invalid:8080/b"}, "GET /b host=five.example.invalid:8080 body=0", "five.example.invalid:8080"},
		{"http GET", []string{"--proxy", "http://" + addr, "-H", "Proxy-Connection: keep-alive", "http://get.example.invalid/c"}, "GET /c host=get.example.invalid body=0", "get.example.invalid:80"},
		{"http HEAD", []string{"--proxy", "http://" + addr, "-I", "http://head.example.invalid/h"}, "HTTP/1.1 200 OK", "head.example.invalid:80"},
		{"http CONNECT", []string{"--proxy", "http://" + addr, "--proxytunnel", "http://tunnel.example.invalid:81/d"}, "GET /d host=tunnel.example.invalid:81 body=0", "tunnel.example.invalid:81"},
		{"http POST", []string{"--proxy", "http://" + addr, "--data-binary", body, "http://post.example.invalid/e"}, fmt.Sprintf("POST /e host=post.example.invalid body=%d", len(body)), "post.example.invalid:80"},
		{"http IPv6 literal", []string{"--proxy", "http://" + addr, "http://[2001:2::9]:8000/f"}, "GET /f host=[2001:2::9]:8000 body=0", "[2001:2::9]:8000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(d.seen())
			out, err := curl(t, tc.args...)
			if err != nil {
				t.Fatalf("curl: %v (out %q)", err, out)
			}
			if !strings.Contains(out, tc.want) || strings.Contains(out, "leaked") || !strings.Contains(out, "code=200") {
				t.Fatalf("got %q, want %q with code 200 and no Proxy-* header at the origin", out, tc.want)
			}
			if got := d.seen()[before:]; !slices.Equal(got, []string{tc.dest}) {
				t.Fatalf("Dial saw %q, want %q", got, tc.dest)
			}
		})
	}
}

// TestCurlKeepAlive sends two requests on one connection: one dial per
// origin connection, and the second request is answered too.
func TestCurlKeepAlive(t *testing.T) {
	d := &recordingDialer{to: origin(t)}
	s := NewServer(Config{Dial: d.Dial, HTTP: true})
	addr := serve(t, s)
	out, err := curl(t, "--proxy", "http://"+addr, "http://k.example.invalid/1", "http://k.example.invalid/2")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "GET /1") || !strings.Contains(out, "GET /2") {
		t.Fatalf("got %q", out)
	}
	if st := s.Stats().Snapshot(); st.Accepted != 1 {
		t.Fatalf("%d client connections, want 1 (keep-alive)", st.Accepted)
	}
}

func TestCurlErrors(t *testing.T) {
	d := &recordingDialer{err: fmt.Errorf("open direct-tcpip: %w", ErrNotAllowed)}
	s := NewServer(Config{Dial: d.Dial, SOCKS: true, HTTP: true})
	addr := serve(t, s)

	out, _ := curl(t, "--proxy", "http://"+addr, "http://denied.example.invalid/")
	if !strings.Contains(out, "code=403") || !strings.Contains(out, "not allowed by the far end's policy") {
		t.Fatalf("GET to a refused destination: %q, want 403 with the reason", out)
	}
	out, err := curl(t, "--proxy", "http://"+addr, "-p", "http://denied.example.invalid/")
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("CONNECT to a refused destination: %q, %v; want curl to report 403", out, err)
	}
	out, err = curl(t, "--socks5-hostname", addr, "http://denied.example.invalid/")
	if err == nil || !strings.Contains(err.Error(), "connection to denied.example.invalid. (2)") {
		t.Fatalf("SOCKS5 to a refused destination: %q, %v; want curl to report reply 2 (not allowed)", out, err)
	}
	out, _ = curl(t, "http://"+addr+"/not-a-proxy-request")
	if !strings.Contains(out, "code=400") || !strings.Contains(out, "this is a proxy") {
		t.Fatalf("origin-form request: %q, want 400 saying this is a proxy", out)
	}
	if st := s.Stats().Snapshot(); st.DialFailures["not-allowed"] != 3 {
		t.Fatalf("dial failures %v, want 3 not-allowed", st.DialFailures)
	}
}

func TestCurlAuth(t *testing.T) {
	d := &recordingDialer{to: origin(t)}
	creds := &Credentials{}
	creds.Add("alice", "pw")
	s := NewServer(Config{Dial: d.Dial, SOCKS: true, HTTP: true, Auth: creds})
	addr := serve(t, s)

	out, err := curl(t, "--proxy", "http://"+addr, "--proxy-user", "alice:pw", "http://a.example.invalid/ok")
	if err != nil || !strings.Contains(out, "GET /ok") || strings.Contains(out, "leaked") {
		t.Fatalf("right password: %q, %v", out, err)
	}
	out, _ = curl(t, "--proxy", "http://"+addr, "--proxy-user", "alice:nope", "http://a.example.invalid/")
	if !strings.Contains(out, "code=407") {
		t.Fatalf("wrong password: %q, want 407", out)
	}
	out, _ = curl(t, "--proxy", "http://"+addr, "http://a.example.invalid/")
	if !strings.Contains(out, "code=407") {
		t.Fatalf("no password: %q, want 407", out)
	}
	out, err = curl(t, "--socks5-hostname", "alice:pw@"+addr, "http://a.example.invalid/s5")
	if err != nil || !strings.Contains(out, "GET /s5") {
		t.Fatalf("SOCKS5 with the right password: %q, %v", out, err)
	}
	if _, err = curl(t, "--socks4a", addr, "http://a.example.invalid/"); err == nil {
		t.Fatal("SOCKS4a succeeded on a proxy that requires a password")
	}
	if st := s.Stats().Snapshot(); st.AuthFailures != 2 {
		t.Fatalf("AuthFailures = %d, want 2 (wrong HTTP password, SOCKS4a)", st.AuthFailures)
	}
}
