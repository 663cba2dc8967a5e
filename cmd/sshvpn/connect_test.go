package main

import (
	"io"
	"strings"
	"testing"
)

func TestParseConnect(t *testing.T) {
	// Flags may come before and after the destination, as with ssh.
	c, err := parseConnect([]string{"-p", "2222", "-i", "k1", "-o", "Tunnel=ethernet", "gw.example",
		"-i", "k2", "-w", "0:any", "--route", "198.18.2.0/24", "--route", "2001:2:0:9::/64", "--address", "198.18.3.2/24"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.ssh.Destination != "gw.example" || c.ssh.Port != 2222 || strings.Join(c.ssh.Identities, ",") != "k1,k2" {
		t.Fatalf("ssh options: %+v", c.ssh)
	}
	if c.ssh.Opts[0] != "TunnelDevice=0:any" || c.ssh.Opts[1] != "Tunnel=ethernet" {
		t.Fatalf("-w must come first among -o so it beats the files: %q", c.ssh.Opts)
	}
	if len(c.routes) != 2 || len(c.addrs) != 1 || c.backend != "kernel" {
		t.Fatalf("tunnel flags: %+v", c)
	}
}

func TestParseConnectErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "needs a destination"},
		{[]string{"gw", "uptime"}, "runs no command"},
		{[]string{"-w", "0:x", "gw"}, `-w 0:x`},
		{[]string{"--peer", "198.18.3.1", "--peer", "198.18.3.9", "gw"}, "--peer takes one address"},
		{[]string{"--route", "198.18.2.0", "gw"}, "like 198.18.0.1/24"},
	} {
		if _, err := parseConnect(tt.args, io.Discard); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want %q", tt.args, err, tt.want)
		}
	}
}
