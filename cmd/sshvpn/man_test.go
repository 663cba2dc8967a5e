package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRoffEscapes(t *testing.T) {
	for in, want := range map[string]string{
		"--listen":            `\-\-listen`,
		`C:\path`:             `C:\epath`,
		".starts a request":   `\&.starts a request`,
		"'also one":           `\&'also one`,
		"a\n.b":               "a\n\\&.b",
		`say "ssh -w" please`: `say \(dqssh \-w\(dq please`,
		"mid.dle and it's ok": "mid.dle and it's ok",
	} {
		if got := roff(in); got != want {
			t.Errorf("roff(%q) = %q, want %q", in, got, want)
		}
	}
}

// Every flag of every paged command has its tagged paragraph, and the
// roff source is the same for every user who makes it.
func TestManPagesHaveEveryFlag(t *testing.T) {
	t.Setenv("HOME", "/home/someone")
	t.Setenv("XDG_STATE_HOME", "")
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/1234")
	for _, name := range pagedCommands() {
		c, _ := lookupCommand(name)
		var b bytes.Buffer
		if err := writeCommandPage(&b, c); err != nil {
			t.Fatal(err)
		}
		page := b.String()
		for _, f := range c.flagList() {
			if !strings.Contains(page, ".TP\n.B "+roff(dashed(f.Name))+"\n") && !strings.Contains(page, ".TP\n.BI "+roff(dashed(f.Name))+" ") {
				t.Errorf("sshvpn-%s(1) has no entry for %s", name, dashed(f.Name))
			}
		}
		if strings.Contains(page, "/home/someone") || strings.Contains(page, "/run/user/1234") {
			t.Errorf("sshvpn-%s(1) names the builder's own directories:\n%s", name, page)
		}
		// --state-dir's default depends on who runs it (root or not),
		// not on who built the page.
		if strings.Contains(page, roff(dashed("state-dir"))) && !strings.Contains(page, roff(stateDirDefault)) {
			t.Errorf("sshvpn-%s(1) gives --state-dir the builder's default, not every user's", name)
		}
	}
}
