package archtest

import (
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/sshvpn/sshvpn"

// pkg is what go list says of one package.
type pkg struct {
	ImportPath string
	Standard   bool
	Imports    []string
	Deps       []string
}

// list runs go list -deps over the module's packages and returns every
// package it names, the module's own and their dependencies.
func list(t *testing.T) map[string]*pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-json=ImportPath,Standard,Imports,Deps", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	pkgs := map[string]*pkg{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs[p.ImportPath] = &p
	}
	return pkgs
}

func own(path string) bool { return path == module || strings.HasPrefix(path, module+"/") }

func short(path string) string { return strings.TrimPrefix(path, module+"/") }

func TestImportGraph(t *testing.T) {
	pkgs := list(t)
	get := func(path string) *pkg {
		p, ok := pkgs[module+"/"+path]
		if !ok {
			t.Fatalf("package %s is gone: update this test with the layout", path)
		}
		return p
	}

	// The packet core links the standard library only, so backends link no SSH.
	for _, d := range get("relay").Deps {
		if !pkgs[d].Standard {
			t.Errorf("relay depends on %s: the packet core imports the standard library only", d)
		}
	}
	// GSO and GRO are pure packet arithmetic, shared by the wire's
	// framed channel and the kernel's tun.
	for _, d := range get("relay/offload").Deps {
		if !pkgs[d].Standard {
			t.Errorf("relay/offload depends on %s: the offload arithmetic imports the standard library only", d)
		}
	}
	// The proxies' front knows no SSH, gVisor or backend: it dials
	// through the function it is given, so names reach the far end as
	// they were sent.
	for _, d := range get("proxy").Deps {
		if !pkgs[d].Standard {
			t.Errorf("proxy depends on %s: the proxies' front imports the standard library only", d)
		}
	}
	// A Report is plain data and a socket: the status command and the
	// metrics page link nothing of SSH, gVisor or a backend through it.
	for _, d := range get("status").Deps {
		if !pkgs[d].Standard {
			t.Errorf("status depends on %s: the status report imports the standard library only", d)
		}
	}
	// Metrics are text made from a status.Report: no client library,
	// and nothing that a Report does not already say.
	for _, d := range get("metrics").Deps {
		if !pkgs[d].Standard && d != module+"/status" {
			t.Errorf("metrics depends on %s: the metrics writer imports the standard library and status only", d)
		}
	}
	pure := func(d string) bool { return pkgs[d].Standard || d == module+"/relay" || d == module+"/relay/offload" }
	// The wire format is pure: the standard library, the core and offload.
	for _, d := range get("relay/wire").Deps {
		if !pure(d) {
			t.Errorf("relay/wire depends on %s: the wire format imports the standard library, relay and relay/offload only", d)
		}
	}
	// The backends link no SSH and never each other.
	for _, backend := range []string{"kernel", "stack"} {
		other := map[string]string{"kernel": "stack", "stack": "kernel"}[backend]
		for _, d := range get(backend).Deps {
			switch {
			case strings.HasPrefix(d, "golang.org/x/crypto"):
				t.Errorf("%s depends on %s: a backend links no SSH code", backend, d)
			case d == module+"/"+other || strings.HasPrefix(d, module+"/"+other+"/"):
				t.Errorf("%s depends on %s: the backends never import each other", backend, short(d))
			case own(d) && !pure(d) && !strings.HasPrefix(d, module+"/"+backend+"/"):
				t.Errorf("%s depends on %s: a backend imports relay, relay/offload and nothing else of sshvpn", backend, short(d))
			}
		}
	}
	// The device is the backend's leaf: it knows packets and the tun
	// driver, and nothing of the host changes made around it.
	for _, d := range get("kernel/tun").Deps {
		if own(d) && !pure(d) {
			t.Errorf("kernel/tun depends on %s: the device imports relay and relay/offload only", short(d))
		}
	}
	for path, p := range pkgs {
		if !own(path) {
			continue
		}
		for _, imp := range p.Imports {
			if imp == module+"/kernel/internal/kerneltest" {
				t.Errorf("%s imports kernel/internal/kerneltest: only tests may", short(path))
			}
		}
	}
	for path, p := range pkgs {
		if !own(path) {
			continue
		}
		for _, imp := range p.Imports {
			if strings.HasPrefix(imp, module+"/cmd/") || imp == module+"/cmd" {
				t.Errorf("%s imports %s: nothing imports cmd", short(path), short(imp))
			}
			if imp == "unsafe" && path != module+"/relay/sshchan" {
				t.Errorf("%s imports unsafe: only relay/sshchan may, for the one x/crypto shim", short(path))
			}
		}
	}
}
