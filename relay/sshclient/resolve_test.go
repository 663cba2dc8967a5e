package sshclient

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// testEnv is a hermetic local machine: home, user and system config live
// in temporary directories.
func testEnv(t *testing.T) env {
	t.Helper()
	home := t.TempDir()
	sys := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	return env{
		home:         home,
		localUser:    "alice",
		uid:          "1000",
		localHost:    "box.example.test",
		userConfig:   filepath.Join(home, ".ssh", "config"),
		systemConfig: filepath.Join(sys, "ssh_config"),
		systemDir:    sys,
	}
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestResolve(t *testing.T) {
	tests := []struct {
		name   string
		user   string            // ~/.ssh/config
		system string            // the system file
		extra  map[string]string // more files, relative to ~/.ssh
		opts   Options
		check  func(t *testing.T, c *Config, e env)
	}{
		{
			name: "defaults",
			opts: Options{Destination: "Gw.Example"},
			check: func(t *testing.T, c *Config, e env) {
				want := &Config{
					OriginalHost: "Gw.Example", HostName: "gw.example", User: "alice", Port: 22,
					AddressFamily: "any", LogLevel: "INFO",
					ServerAliveCountMax: 3, StrictHostKeyChecking: "ask", Tunnel: "no", TunnelDevice: "any:any",
					UserKnownHostsFiles: []string{
						filepath.Join(e.home, ".ssh/known_hosts"), filepath.Join(e.home, ".ssh/known_hosts2"),
					},
					GlobalKnownHostsFiles: []string{"/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"},
					env:                   e,
				}
				if !reflect.DeepEqual(c, want) {
					t.Errorf("got  %+v\nwant %+v", c, want)
				}
			},
		},
		{
			name: "host block, first value wins, tokens",
			user: `
# comment
Host gw
  HostName %h.example.net
  User bob
  Port=2222
  Port 2223
  IdentityFile ~/.ssh/id_%h_%r
  IdentityFile "%d/keys/with space"
Host *
  User carol
  ServerAliveInterval 1m30s
  ServerAliveCountMax 5
  IdentityFile %u@%l
`,
			opts: Options{Destination: "gw"},
			check: func(t *testing.T, c *Config, e env) {
				eq(t, "hostname", c.HostName, "gw.example.net")
				eq(t, "user", c.User, "bob")
				eq(t, "port", c.Port, 2222)
				eq(t, "interval", c.ServerAliveInterval, 90*time.Second)
				eq(t, "countmax", c.ServerAliveCountMax, 5)
				eq(t, "identities", c.IdentityFiles, []string{
					filepath.Join(e.home, ".ssh/id_gw.example.net_bob"),
					filepath.Join(e.home, "keys/with space"),
					"alice@box.example.test",
				})
			},
		},
		{
			name: "negated host pattern and ? wildcard",
			user: `
Host *.corp !bastion.corp
  User inner
Host gw?
  Port 2022
Host *
  User outer
`,
			opts: Options{Destination: "bastion.corp"},
			check: func(t *testing.T, c *Config, _ env) {
				eq(t, "user", c.User, "outer")
				eq(t, "port", c.Port, 22)
			},
		},
		{
			name: "command line precedence",
			user: `
Host gw
  User cfguser
  Port 1000
  ProxyJump cfgjump
  IdentityFile /cfg/key
`,
			opts: Options{
				Destination: "destuser@gw", Port: 3000, Jump: "j1,j2:2200",
				Identities: []string{"/cli/key"},
				Opts:       []string{"User=optuser", "Port 2000", "StrictHostKeyChecking=accept-new", "User=second"},
			},
			check: func(t *testing.T, c *Config, _ env) {
				eq(t, "user", c.User, "optuser")
				eq(t, "port", c.Port, 3000)
				eq(t, "jump", c.ProxyJump, "j1,j2:2200")
				eq(t, "strict", c.StrictHostKeyChecking, "accept-new")
				eq(t, "identities", c.IdentityFiles, []string{"/cli/key", "/cfg/key"})
			},
		},
		{
			name: "destination user and URI port beat the files",
			user: "Host gw\n User cfguser\n Port 1000\n",
			opts: Options{Destination: "ssh://u@gw:2022"},
			check: func(t *testing.T, c *Config, _ env) {
				eq(t, "user", c.User, "u")
				eq(t, "port", c.Port, 2022)
			},
		},
		{
			name: "match criteria",
			user: `
Match host real.example originalhost alias
  Port 1001
Match user bob localuser alice
  ServerAliveInterval 7
Match !host other
  ServerAliveCountMax 9
Match exec "exit 1"
  User failed
Match host nomatch exec "touch %d/ran-after-failed"
  User hacked
Match exec "test %n = alias" exec "touch %d/ran"
  Compression yes
Match all
  ConnectTimeout 4
Host alias
  HostName real.example
  User bob
`,
			opts: Options{Destination: "alias"},
			check: func(t *testing.T, c *Config, e env) {
				// Before Host alias is read, HostName is unset: Match host
				// sees "alias" and the first block does not apply.
				eq(t, "port", c.Port, 22)
				eq(t, "interval", c.ServerAliveInterval, time.Duration(0))
				eq(t, "countmax", c.ServerAliveCountMax, 9)
				eq(t, "user", c.User, "bob")
				eq(t, "timeout", c.ConnectTimeout, 4*time.Second)
				eq(t, "compression", c.Compression, true)
				if _, err := os.Stat(filepath.Join(e.home, "ran")); err != nil {
					t.Errorf("Match exec did not run: %v", err)
				}
				if _, err := os.Stat(filepath.Join(e.home, "ran-after-failed")); err == nil {
					t.Error("Match exec ran after a criterion failed")
				}
			},
		},
		{
			name: "match host sees HostName, match final second pass",
			user: `
Host alias
  HostName Real.Example
Match host real.example
  Port 1001
Match final host real.example
  User finaluser
Host real.example
  IdentityFile /final/key
`,
			opts: Options{Destination: "alias"},
			check: func(t *testing.T, c *Config, _ env) {
				eq(t, "hostname", c.HostName, "real.example")
				eq(t, "port", c.Port, 1001)
				eq(t, "user", c.User, "finaluser")
				// On the final pass Host blocks see the HostName.
				eq(t, "identities", c.IdentityFiles, []string{"/final/key"})
			},
		},
		{
			name: "include relative glob, in place, inactive block",
			user: `
Include conf.d/*.conf
Host other
  Include other.conf
Host *
  Port 2
`,
			extra: map[string]string{
				"conf.d/10-a.conf": "Host gw\n  User fromA\nMatch all\n  ServerAliveCountMax 7\n",
				"conf.d/20-b.conf": "Host gw\n  User fromB\n  Port 1\n",
				"conf.d/skip.txt":  "Host *\n  Port 99\n",
				"other.conf":       "Port 50\nUser other\n",
			},
			opts: Options{Destination: "gw"},
			check: func(t *testing.T, c *Config, _ env) {
				eq(t, "user", c.User, "fromA")
				eq(t, "port", c.Port, 1)
				eq(t, "countmax", c.ServerAliveCountMax, 7)
			},
		},
		{
			name:   "system file after user file, relative include from /etc/ssh",
			user:   "Host gw\n  User u1\n",
			system: "Include sys.d/*.conf\nHost *\n  User u2\n  Port 44\n",
			check: func(t *testing.T, c *Config, _ env) {
				eq(t, "user", c.User, "u1")
				eq(t, "port", c.Port, 44)
				eq(t, "strict", c.StrictHostKeyChecking, "yes")
			},
			opts: Options{Destination: "gw"},
		},
		{
			name: "ignored keywords are notes",
			user: "Host *\n  ForwardAgent yes\n  SendEnv LANG\n  GSSAPIAuthentication no\n",
			opts: Options{Destination: "gw", Opts: []string{"ControlMaster=auto"}},
			check: func(t *testing.T, c *Config, _ env) {
				hasNote(t, c, "line 2: forwardagent does not concern a tunnel")
				hasNote(t, c, "line 3: sendenv does not concern a tunnel")
				eq(t, "warnings", c.Warnings, []string(nil))
			},
		},
		{
			name: "known hosts lists, tunnel, ciphers, booleans",
			user: `
Host *
  UserKnownHostsFile ~/kh1 %d/kh_%h
  UserKnownHostsFile /ignored
  GlobalKnownHostsFile none
  Tunnel yes
  TunnelDevice 3
  Ciphers ^aes256-gcm@openssh.com
  HashKnownHosts yes
  BatchMode yes
  IdentitiesOnly yes
  StrictHostKeyChecking off
  HostKeyAlias gwalias
`,
			opts: Options{Destination: "gw"},
			check: func(t *testing.T, c *Config, e env) {
				eq(t, "ukh", c.UserKnownHostsFiles, []string{filepath.Join(e.home, "kh1"), filepath.Join(e.home, "kh_gw")})
				eq(t, "gkh", c.GlobalKnownHostsFiles, []string(nil))
				eq(t, "tunnel", c.Tunnel, "point-to-point")
				eq(t, "tundev", c.TunnelDevice, "3:any")
				eq(t, "cipher[0]", c.Ciphers[0], "aes256-gcm@openssh.com")
				eq(t, "flags", []bool{c.HashKnownHosts, c.BatchMode, c.IdentitiesOnly}, []bool{true, true, true})
				eq(t, "strict", c.StrictHostKeyChecking, "no")
				eq(t, "alias", c.HostKeyAlias, "gwalias")
			},
		},
		{
			name: "default identities that exist",
			extra: map[string]string{
				"id_ed25519": "x",
				"id_rsa":     "x",
			},
			opts: Options{Destination: "gw"},
			check: func(t *testing.T, c *Config, e env) {
				eq(t, "identities", c.IdentityFiles, []string{
					filepath.Join(e.home, ".ssh/id_rsa"), filepath.Join(e.home, ".ssh/id_ed25519"),
				})
			},
		},
		{
			name: "ProxyJump none",
			user: "Host gw\n  ProxyJump none\nHost *\n  ProxyJump j\n",
			opts: Options{Destination: "gw"},
			check: func(t *testing.T, c *Config, _ env) {
				eq(t, "jump", c.ProxyJump, "")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := testEnv(t)
			if tt.user != "" {
				writeFile(t, e.userConfig, tt.user)
			}
			if tt.system != "" {
				writeFile(t, e.systemConfig, tt.system)
				writeFile(t, filepath.Join(e.systemDir, "sys.d/a.conf"), "StrictHostKeyChecking yes\n")
			}
			for name, content := range tt.extra {
				writeFile(t, filepath.Join(e.home, ".ssh", name), content)
			}
			c, err := resolve(tt.opts, e)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c, e)
		})
	}
}

func TestResolveErrors(t *testing.T) {
	tests := []struct {
		name, config string
		opts         Options
		want         string
	}{
		{"bad port names file and line", "Host *\n\n  Port abc\n", Options{}, "config line 3: bad port 'abc'"},
		{"bad port in inactive block", "Host nomatch\n  Port 0\n", Options{}, "config line 2: bad port"},
		{"bad quotes", "Host *\n  User \"bob\n", Options{}, "config line 2: invalid quotes"},
		{"missing argument", "Host *\n  User\n", Options{}, `config line 2: no argument after keyword "user"`},
		{"bad strict", "StrictHostKeyChecking maybe\n", Options{}, `unsupported option "maybe"`},
		{"bad token", "IdentityFile /k/%Z\n", Options{}, "unknown token %Z"},
		{"match all combined", "Match all host x\n", Options{}, "cannot be combined"},
		{"proxycommand", "ProxyCommand nc %h %p\n", Options{}, "ProxyCommand is not supported"},
		{"host in -o", "", Options{Opts: []string{"Host=x"}}, "not supported as a command-line option"},
		{"bad -J", "", Options{Jump: "a,b:99999"}, "-J: invalid -J argument"},
		{"bad tunnel device", "TunnelDevice 1:x\n", Options{}, "bad tunnel device"},
		{"-F missing file", "", Options{ConfigFile: "/nonexistent/sshvpn-config"}, "can't open user config file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := testEnv(t)
			writeFile(t, e.userConfig, tt.config)
			tt.opts.Destination = "gw"
			_, err := resolve(tt.opts, e)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestSplitLine(t *testing.T) {
	tests := []struct {
		line string
		key  string
		args []string
	}{
		{"  Port=22", "port", []string{"22"}},
		{"Port = 22 # comment", "port", []string{"22"}},
		{"\tIdentityFile \"a b\" 'c d' e\\ f", "identityfile", []string{"a b", "c d", "e f"}},
		{"# only comment", "", nil},
		{"HOSTNAME\tx", "hostname", []string{"x"}},
	}
	for _, tt := range tests {
		k, rest, _ := splitKeyword(tt.line)
		a, err := splitArgs(rest)
		if err != nil || k != tt.key || !reflect.DeepEqual(a, tt.args) {
			t.Errorf("splitLine(%q) = %q %q %v, want %q %q", tt.line, k, a, err, tt.key, tt.args)
		}
	}
}

func TestParseJump(t *testing.T) {
	got, err := ParseJump("u@a,b:2200,[2001:2::1]:23,ssh://v@c:24")
	if err != nil {
		t.Fatal(err)
	}
	want := []JumpHost{{"u", "a", 0}, {"", "b", 2200}, {"", "2001:2::1", 23}, {"v", "c", 24}}
	eq(t, "hops", got, want)
	for _, bad := range []string{"a,", "u@", "a:0"} {
		if _, err := ParseJump(bad); err == nil {
			t.Errorf("ParseJump(%q) succeeded", bad)
		}
	}
}

func TestParseTunnelDevice(t *testing.T) {
	for s, want := range map[string][2]int{"any": {TunnelAny, TunnelAny}, "0:1": {0, 1}, "5": {5, TunnelAny}, "any:7": {TunnelAny, 7}} {
		l, r, err := ParseTunnelDevice(s)
		if err != nil || [2]int{l, r} != want {
			t.Errorf("ParseTunnelDevice(%q) = %d, %d, %v", s, l, r, err)
		}
	}
	for _, bad := range []string{"", "x", "1:", "-1", "2147483647"} {
		if _, _, err := ParseTunnelDevice(bad); err == nil {
			t.Errorf("ParseTunnelDevice(%q) succeeded", bad)
		}
	}
}

func eq[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func hasNote(t *testing.T, c *Config, sub string) {
	t.Helper()
	for _, n := range c.Notes {
		if strings.Contains(n, sub) {
			return
		}
	}
	t.Errorf("no note contains %q; notes: %q", sub, c.Notes)
}
