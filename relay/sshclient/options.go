package sshclient

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Options are the ssh-like command-line flags that drive Resolve.
type Options struct {
	// Destination is ssh's positional argument: [user@]host or
	// ssh://[user@]host[:port]. A user given here loses to -o User, like ssh.
	Destination string
	// Port is -p; 0 means unset. It beats -o Port and the config files.
	Port int
	// ConfigFile is -F. "" reads ~/.ssh/config and then /etc/ssh/ssh_config;
	// a path reads only that file (it must exist); "none" reads no file.
	ConfigFile string
	// Identities are the -i files, in order; they come before any
	// IdentityFile from the config files.
	Identities []string
	// Opts are the -o Key=Value (or "Key Value") options, in order. They are
	// read before any file, so the first one obtained wins. Host, Match and
	// Include are refused here, as ssh refuses them.
	Opts []string
	// Jump is -J: a comma-separated ProxyJump chain of [user@]host[:port]
	// hops (or "none"). It beats ProxyJump from -o and the files.
	Jump string
}

// Config is the resolved client configuration for one destination; see
// ssh_config(5) for the meaning of each keyword. Paths are expanded (~,
// %-tokens and ${ENV}). Resolve fills every field with OpenSSH's default
// when nothing set it.
type Config struct {
	// OriginalHost is the host as given on the command line (ssh's %n and
	// Match originalhost), with its case.
	OriginalHost string
	// HostName is the host to connect to after HostName and %h expansion,
	// lower-cased unless it is an address.
	HostName string
	// User is the remote user; like OpenSSH 10.0, %-tokens and ${ENV} in
	// it are expanded (9.2 takes them literally).
	User string
	Port int
	// IdentityFiles: -i files, then IdentityFile lines; when neither gave
	// one, the default files (~/.ssh/id_rsa, id_ecdsa, id_ecdsa_sk,
	// id_ed25519, id_ed25519_sk) that exist.
	IdentityFiles  []string
	IdentitiesOnly bool
	// ProxyJump is the jump chain as ssh -G prints it, "" when there is
	// none ("none" resolves to ""). Dial resolves each hop with its own
	// config; see ParseJump.
	ProxyJump string
	// ServerAliveInterval 0 disables keepalives.
	ServerAliveInterval time.Duration
	ServerAliveCountMax int
	// UserKnownHostsFiles and GlobalKnownHostsFiles are lists given on one
	// line each: like ssh, the first line obtained wins as a whole. User
	// files are expanded; global ones are taken as written, as ssh does.
	UserKnownHostsFiles   []string
	GlobalKnownHostsFiles []string
	// StrictHostKeyChecking is one of "yes", "accept-new", "no" ("off" and
	// "false" resolve to "no"), or "ask".
	StrictHostKeyChecking string
	// HashKnownHosts hashes the host names Dial adds to known_hosts.
	HashKnownHosts bool
	// HostKeyAlias, when set, replaces the host name in known_hosts lookups
	// (lower-cased, as ssh does).
	HostKeyAlias string
	// Tunnel is "no", "point-to-point" or "ethernet" ("yes" resolves to
	// "point-to-point", as in ssh).
	Tunnel string
	// TunnelDevice is "local:remote", each a unit number or "any"; see
	// ParseTunnelDevice.
	TunnelDevice string
	// ConnectTimeout bounds the TCP connection (0: the system's limit).
	ConnectTimeout time.Duration
	// Ciphers is nil for x/crypto/ssh's defaults; otherwise the cipher list
	// with OpenSSH's +, - and ^ forms applied to those defaults.
	//
	// KeyExchanges, MACs and HostKeyAlgorithms are the same for
	// KexAlgorithms, MACs and HostKeyAlgorithms, keeping only the names
	// x/crypto/ssh implements.
	Ciphers           []string
	KeyExchanges      []string
	MACs              []string
	HostKeyAlgorithms []string
	BatchMode         bool
	// AddressFamily is "any", "inet" or "inet6".
	AddressFamily string
	// Compression is Compression yes.
	Compression bool
	// LogLevel is ssh's name for the level, exactly as ssh -G prints it:
	// SILENT (for QUIET), FATAL, ERROR, INFO (the default), VERBOSE, DEBUG
	// (for DEBUG and DEBUG1), DEBUG2 or DEBUG3.
	LogLevel string
	// Notes says what was read and deliberately not applied, each with its
	// file and line: keywords that do not concern a tunnel, deprecated
	// ones, unknown keywords that IgnoreUnknown covers. Callers log them at
	// debug level.
	Notes []string
	// Warnings are for the default log level: keywords ssh itself reports
	// as unsupported, and applied keywords that sshvpn ignores although
	// they change how ssh would connect (port forwardings, certificates,
	// IdentityAgent, KnownHostsCommand, ...), and unknown keywords that
	// IgnoreUnknown does not cover (ssh stops at those; sshvpn warns).
	Warnings []string

	// configFile is Options.ConfigFile, handed to ProxyJump hops like ssh
	// hands -F to the jump ssh.
	configFile string
	env        env
}

// Defaults, as in OpenSSH's readconf.c fill_default_options.
const (
	defaultPort                = 22
	defaultServerAliveCountMax = 3
)

var defaultIdentityNames = []string{"id_rsa", "id_ecdsa", "id_ecdsa_sk", "id_ed25519", "id_ed25519_sk"}

// env is what resolution reads from the local machine. Tests substitute it.
type env struct {
	home      string // the passwd home directory, as ssh uses (not $HOME)
	localUser string
	uid       string
	localHost string // full host name (%l)
	// privateGroup is the gid of the user's primary group when it is a
	// personal group (named like the user): Debian's ssh then accepts a
	// group-writable config file.
	privateGroup string
	// userConfig and systemConfig are the files read when Options.ConfigFile
	// is "".
	userConfig, systemConfig string
	systemDir                string // relative Include base for the system file
}

func currentEnv() (env, error) {
	u, err := user.Current()
	if err != nil {
		return env{}, fmt.Errorf("look up the local user: %w", err)
	}
	h, err := os.Hostname()
	if err != nil {
		return env{}, fmt.Errorf("look up the local host name: %w", err)
	}
	e := env{
		home:         u.HomeDir,
		localUser:    u.Username,
		uid:          u.Uid,
		localHost:    h,
		userConfig:   filepath.Join(u.HomeDir, ".ssh", "config"),
		systemConfig: "/etc/ssh/ssh_config",
		systemDir:    "/etc/ssh",
	}
	if g, err := user.LookupGroupId(u.Gid); err == nil && g.Name == u.Username {
		e.privateGroup = u.Gid
	}
	return e, nil
}

// Resolve computes the configuration for o.Destination the way ssh -G
// does. Errors in files name the file and line.
func Resolve(o Options) (*Config, error) {
	e, err := currentEnv()
	if err != nil {
		return nil, err
	}
	return resolve(o, e)
}

func resolve(o Options, e env) (*Config, error) {
	return resolveWith(o, e, nil)
}

// resolveWith is resolve with a substitute for Match exec (the fuzzer must
// not run commands).
func resolveWith(o Options, e env, execFn func(string) (bool, error)) (*Config, error) {
	destUser, host, destPort, err := ParseDestination(o.Destination)
	if err != nil {
		return nil, err
	}
	r := newResolver(e, host)
	r.exec = execFn
	if err := r.readCommandLine(o, destUser, destPort); err != nil {
		return nil, err
	}
	if err := r.readConfigs(o.ConfigFile); err != nil {
		return nil, err
	}
	// ssh.c: "Match final", or CanonicalizeHostname (which sshvpn does
	// not otherwise perform: it looks nothing up), reads the files a
	// second time with Host and Match host seeing the expanded,
	// lower-cased HostName; values obtained in the first pass still win.
	if canon := r.str("canonicalizehostname", "no"); !oneOf(canon, []string{"no", "false"}) {
		r.wantFinal = true
		if r.has("canonicaldomains") || strings.EqualFold(canon, "always") {
			r.warn("%s: CanonicalizeHostname is not applied: sshvpn does not look host names up in CanonicalDomains",
				r.vals["canonicalizehostname"].where)
		}
	}
	if r.wantFinal {
		r.final = true
		if err := r.checkHostName(); err != nil {
			return nil, err
		}
		r.host = r.hostName()
		r.vals["hostname"] = setting{
			args:  []string{strings.ReplaceAll(r.host, "%", "%%")},
			where: r.vals["hostname"].where,
		}
		if err := r.readConfigs(o.ConfigFile); err != nil {
			return nil, err
		}
	}
	cfg, err := r.finish()
	if err != nil {
		return nil, err
	}
	cfg.configFile = o.ConfigFile
	cfg.env = e
	return cfg, nil
}

// readCommandLine stores the flags with ssh's precedence: -p beats -o Port,
// which beats a port in the destination URI; -o User beats user@; -J beats
// -o ProxyJump.
func (r *resolver) readCommandLine(o Options, destUser string, destPort int) error {
	if o.Port != 0 {
		if o.Port < 0 || o.Port > 65535 {
			return fmt.Errorf("-p %d: bad port number", o.Port)
		}
		r.store("port", []string{strconv.Itoa(o.Port)}, "-p")
	}
	if o.Jump != "" {
		v, err := parseJumpLine(o.Jump, true)
		if err != nil {
			return fmt.Errorf("-J: invalid -J argument: %w", err)
		}
		r.store("proxyjump", []string{v}, "-J")
		if !strings.EqualFold(v, "none") {
			r.store("proxycommand", []string{"none"}, "-J")
		}
	}
	for _, id := range o.Identities {
		r.store("identityfile", []string{id}, "-i")
	}
	for _, opt := range o.Opts {
		if err := r.processLine(opt, "command-line", nil); err != nil {
			return err
		}
	}
	if destUser != "" {
		r.store("user", []string{destUser}, "destination")
	}
	if destPort != 0 {
		r.store("port", []string{strconv.Itoa(destPort)}, "destination")
	}
	return nil
}

// readConfigs reads the -F file, or the user file and then the system file.
func (r *resolver) readConfigs(configFile string) error {
	switch configFile {
	case "none":
		return nil
	case "":
		if err := r.readFile(r.env.userConfig, true, false, true); err != nil {
			return err
		}
		return r.readFile(r.env.systemConfig, false, false, false)
	}
	p, err := r.tildeExpand(configFile)
	if err != nil {
		return err
	}
	return r.readFile(p, true, true, false)
}

// checkHostName refuses a HostName with a token other than %h and %%,
// which ssh.c refuses (fatally) once the files are read.
func (r *resolver) checkHostName() error {
	if s, ok := r.vals["hostname"]; ok {
		if _, err := expandHostName(s.args[0], r.host); err != nil {
			return fmt.Errorf("%s: HostName: %w", s.where, err)
		}
	}
	return nil
}

// finish turns the stored values into a Config, applying defaults and
// expanding tokens.
func (r *resolver) finish() (*Config, error) {
	if err := r.checkHostName(); err != nil {
		return nil, err
	}
	c := &Config{
		OriginalHost:          r.originalHost,
		HostName:              r.hostName(),
		User:                  r.str("user", r.env.localUser),
		Port:                  r.port(),
		IdentitiesOnly:        r.boolean("identitiesonly"),
		ServerAliveInterval:   r.duration("serveraliveinterval"),
		ServerAliveCountMax:   r.integer("serveralivecountmax", defaultServerAliveCountMax),
		StrictHostKeyChecking: normalizeStrict(r.str("stricthostkeychecking", "ask")),
		HashKnownHosts:        r.boolean("hashknownhosts"),
		HostKeyAlias:          strings.ToLower(r.str("hostkeyalias", "")),
		Tunnel:                normalizeTunnel(r.str("tunnel", "no")),
		ConnectTimeout:        r.duration("connecttimeout"),
		BatchMode:             r.boolean("batchmode"),
		AddressFamily:         strings.ToLower(r.str("addressfamily", "any")),
		Compression:           r.boolean("compression"),
		LogLevel:              normalizeLogLevel(r.str("loglevel", "INFO")),
		Notes:                 r.notes,
		Warnings:              r.warnings,
	}
	// ssh: BatchMode without a ServerAliveInterval keeps one of 300 s, so a
	// dead server cannot hang a batch job.
	if c.BatchMode && !r.has("serveraliveinterval") {
		c.ServerAliveInterval = 300 * time.Second
	}
	if s, ok := r.vals["proxycommand"]; ok && !strings.EqualFold(s.args[0], "none") {
		return nil, fmt.Errorf("%s: ProxyCommand is not supported by sshvpn; use ProxyJump", s.where)
	}
	if j := r.str("proxyjump", ""); !strings.EqualFold(j, "none") {
		c.ProxyJump = j
	}
	local, remote, _ := ParseTunnelDevice(r.str("tunneldevice", "any:any"))
	c.TunnelDevice = formatTunnelUnit(local) + ":" + formatTunnelUnit(remote)
	if s, ok := r.vals["ciphers"]; ok {
		c.Ciphers = applyAlgorithmList(defaultCiphers(), s.args[0])
	}
	algs, insecure := ssh.SupportedAlgorithms(), ssh.InsecureAlgorithms()
	for _, l := range []struct {
		key             string
		dst             *[]string
		defaults, extra []string
	}{
		{"kexalgorithms", &c.KeyExchanges, algs.KeyExchanges, insecure.KeyExchanges},
		{"macs", &c.MACs, algs.MACs, insecure.MACs},
		{"hostkeyalgorithms", &c.HostKeyAlgorithms, algs.HostKeys, insecure.HostKeys},
	} {
		s, ok := r.vals[l.key]
		if !ok {
			continue
		}
		// Names x/crypto/ssh does not implement (gss-*, umac-*, ...) are
		// left out, as ssh leaves out what the server lacks.
		var kept, dropped []string
		for _, a := range applyAlgorithmList(l.defaults, s.args[0]) {
			if slices.Contains(l.defaults, a) || slices.Contains(l.extra, a) {
				kept = append(kept, a)
			} else {
				dropped = append(dropped, a)
			}
		}
		if len(kept) == 0 {
			return nil, fmt.Errorf("%s: %s: sshvpn implements none of %s", s.where, l.key, s.args[0])
		}
		if len(dropped) > 0 {
			r.note("%s: %s: not implemented by sshvpn, left out: %s", s.where, l.key, strings.Join(dropped, ","))
		}
		*l.dst = kept
	}
	c.Notes = r.notes
	// OpenSSH 10.0 expands User (without %r and %C, which depend on it)
	// and then refuses shell metacharacters in it.
	if s, ok := r.vals["user"]; ok {
		t := r.connTokens(c)
		delete(t, 'r')
		delete(t, 'C')
		u, err := t.expandDollar(s.args[0])
		if err != nil {
			return nil, fmt.Errorf("%s: User: %w", s.where, err)
		}
		c.User = u
	}
	if !validRuser(c.User) {
		return nil, fmt.Errorf("remote username %q contains invalid characters", c.User)
	}
	return c, r.expandPaths(c)
}

// expandPaths fills the path lists, expanding ~, %-tokens and ${ENV}.
func (r *resolver) expandPaths(c *Config) error {
	t := r.connTokens(c)
	for _, s := range r.identities {
		p, err := r.expandPath(t, s.args[0])
		if err != nil {
			return fmt.Errorf("%s: IdentityFile: %w", s.where, err)
		}
		c.IdentityFiles = appendUnique(c.IdentityFiles, p)
	}
	if len(r.identities) == 0 {
		for _, name := range defaultIdentityNames {
			p := filepath.Join(r.env.home, ".ssh", name)
			if _, err := os.Stat(p); err == nil {
				c.IdentityFiles = append(c.IdentityFiles, p)
			}
		}
	}
	var err error
	c.UserKnownHostsFiles, err = r.pathList(t, "userknownhostsfile", true,
		"~/.ssh/known_hosts", "~/.ssh/known_hosts2")
	if err != nil {
		return err
	}
	c.GlobalKnownHostsFiles, err = r.pathList(t, "globalknownhostsfile", false,
		"/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")
	return err
}

func (r *resolver) pathList(t tokens, key string, expand bool, defaults ...string) ([]string, error) {
	s, ok := r.vals[key]
	if !ok {
		s = setting{args: defaults, where: "default"}
	}
	if strings.EqualFold(s.args[0], "none") {
		return nil, nil // no file, as in ssh
	}
	var out []string
	for _, a := range s.args {
		p := a
		if expand {
			var err error
			if p, err = r.expandPath(t, a); err != nil {
				return nil, fmt.Errorf("%s: %s: %w", s.where, key, err)
			}
		}
		out = append(out, p)
	}
	return out, nil
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

func normalizeStrict(s string) string {
	switch strings.ToLower(s) {
	case "yes", "true":
		return "yes"
	case "no", "false", "off":
		return "no"
	}
	return strings.ToLower(s)
}

func normalizeTunnel(s string) string {
	switch strings.ToLower(s) {
	case "yes", "true", "point-to-point":
		return "point-to-point"
	case "no", "false":
		return "no"
	}
	return strings.ToLower(s)
}

// normalizeLogLevel gives the name ssh -G prints (log.c log_level_name
// on Debian's builds): QUIET prints as SILENT, DEBUG1 as DEBUG.
func normalizeLogLevel(s string) string {
	switch s = strings.ToUpper(s); s {
	case "QUIET":
		return "SILENT"
	case "DEBUG1":
		return "DEBUG"
	}
	return s
}

// quiet reports a LogLevel below INFO (ssh -q is QUIET): ssh's
// informational messages, such as "Permanently added", are not shown.
func (c *Config) quiet() bool {
	switch c.LogLevel {
	case "SILENT", "FATAL", "ERROR":
		return true
	}
	return false
}
