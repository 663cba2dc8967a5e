package sshclient

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// installSeed copies testdata/sshconfig/<distro> into a temporary root,
// rewriting the absolute /etc/ paths into it, and returns the root.
func installSeed(t *testing.T, distro string) string {
	t.Helper()
	root := t.TempDir()
	src := filepath.Join("testdata", "sshconfig", distro)
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		writeFile(t, filepath.Join(root, rel), strings.ReplaceAll(string(data), " /etc/", " "+root+"/etc/"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// TestDistroSeeds reads the distribution-shaped system files as ssh reads
// /etc/ssh/ssh_config: they load with no warning (a distribution's own
// files must not make every run noisy), and
// they resolve as ssh -G resolves them.
func TestDistroSeeds(t *testing.T) {
	for _, distro := range []string{"debian", "ubuntu", "fedora", "arch"} {
		t.Run(distro, func(t *testing.T) {
			root := installSeed(t, distro)
			e := testEnv(t)
			e.systemConfig = filepath.Join(root, "etc/ssh/ssh_config")
			e.systemDir = filepath.Join(root, "etc/ssh")
			for _, dest := range []string{"gw", "db.corp.example"} {
				c, err := resolve(Options{Destination: dest}, e)
				if err != nil {
					t.Fatalf("%s: %v", dest, err)
				}
				if len(c.Warnings) > 0 {
					t.Errorf("%s: warnings from a stock file: %q", dest, c.Warnings)
				}
				if len(c.Notes) == 0 && distro != "arch" { // Arch's applies to unix/ and vsock/ names only
					t.Errorf("%s: no notes for the keywords read and not applied", dest)
				}
			}
			for _, o := range oracles(t) {
				cfg := filepath.Join(root, "etc/ssh/ssh_config")
				re, err := currentEnv()
				if err != nil {
					t.Fatal(err)
				}
				for _, dest := range []string{"gw", "db.corp.example"} {
					got, err := resolve(Options{ConfigFile: cfg, Destination: dest}, re)
					if err != nil {
						t.Fatal(err)
					}
					want, stderr, ok := sshG(t, o.bin, "-F", cfg, dest)
					if !ok {
						t.Fatalf("%s refused %s: %s", o.bin, distro, stderr)
					}
					for _, d := range compareWithSSH(got, want, re, o, distro == "fedora") {
						t.Errorf("%s %s: %s", o.bin, dest, d)
					}
				}
			}
		})
	}
}

// Only an unknown keyword warns: it is ignored, and the rest of the file
// applies (ssh would stop at it).
func TestUnknownKeywordWarns(t *testing.T) {
	e := testEnv(t)
	writeFile(t, e.userConfig, "Host gw\n  SendEnv LANG\n  FrobnicateTunnels yes\n  Port 2200\n")
	c, err := resolve(Options{Destination: "gw"}, e)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "line 3: unknown keyword frobnicatetunnels") {
		t.Errorf("warnings %q, want one for line 3's unknown keyword", c.Warnings)
	}
	if c.Port != 2200 {
		t.Errorf("port %d: the lines after the unknown keyword were not applied", c.Port)
	}
}

// This machine's own stock /etc/ssh/ssh_config, as shipped, loads with no
// warning.
func TestSystemConfigWarnsNothing(t *testing.T) {
	const stock = "/etc/ssh/ssh_config"
	if _, err := os.Stat(stock); err != nil {
		t.Skipf("no %s here", stock)
	}
	e := testEnv(t)
	e.systemConfig, e.systemDir = stock, "/etc/ssh"
	c, err := resolve(Options{Destination: "gw"}, e)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) > 0 {
		t.Errorf("%s warns: %q", stock, c.Warnings)
	}
}
