package sshclient

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// kind is how a keyword's arguments are checked and stored; it mirrors the
// parse_* labels of readconf.c's process_config_line_depth.
type kind int

const (
	kHost kind = iota + 1
	kMatch
	kInclude
	kIgnore         // accepted, arguments discarded (Protocol)
	kIgnoredUnknown // unknown, but IgnoreUnknown lists it
	kDeprecated     // ssh: debug "Deprecated option"
	kUnsupported    // ssh: error "Unsupported option", but goes on
	kFlag           // yes/no/true/false
	kMulti          // one of values
	kInt            // atoi_err: 0..INT_MAX
	kTime           // convtime or "none"
	kPort           // a2port
	kString         // one non-empty argument
	kIdentityFile   // one argument, accumulates
	kCommand        // the rest of the line, unsplit
	kHostFiles      // known hosts lists: "none" only alone
	kJump           // ProxyJump, the rest of the line
	kTunnelDevice   // a2tun local[:remote]
	kCiphers        // a cipher list, names checked
	kLogLevel       // log_level_number
	kSendEnv        // names without "="
	kSetEnv         // NAME=value
	kControlPersist // yes/no or a time
	kRefuse         // RefuseConnection (OpenSSH 10.1): refuses when active
	kArgs           // min..max arguments, not checked further
)

// keyword0 describes one ssh_config keyword.
type keyword0 struct {
	kind     kind
	values   []string // kMulti
	min, max int      // kArgs; max 0 means unbounded
	// use is what sshvpn does with it: "" is "read, not applied" (a
	// debug note when it applies); applied keywords set applied.
	applied bool
	// matters, when set, makes an applied line a warning: sshvpn ignores
	// something that changes how ssh would connect.
	matters string
}

var (
	flagValues   = []string{"yes", "no", "true", "false"}
	yesNoAsk     = []string{"yes", "no", "true", "false", "ask"}
	strictValues = []string{"yes", "no", "true", "false", "off", "ask", "accept-new"}
	tunnelValues = []string{"yes", "no", "true", "false", "point-to-point", "ethernet"}
	logLevels    = []string{"QUIET", "FATAL", "ERROR", "INFO", "VERBOSE", "DEBUG", "DEBUG1", "DEBUG2", "DEBUG3"}
	// cipherNames are the names cipher.c knows (ciphers_valid); "none" is
	// internal and refused.
	cipherNames = []string{"3des-cbc", "aes128-cbc", "aes192-cbc", "aes256-cbc", "aes128-ctr",
		"aes192-ctr", "aes256-ctr", "aes128-gcm@openssh.com", "aes256-gcm@openssh.com",
		"chacha20-poly1305@openssh.com"}
)

func flag() keyword0                          { return keyword0{kind: kFlag} }
func multi(v ...string) keyword0              { return keyword0{kind: kMulti, values: v} }
func str1() keyword0                          { return keyword0{kind: kString} }
func nargs(min, max int) keyword0             { return keyword0{kind: kArgs, min: min, max: max} }
func applied(k keyword0) keyword0             { k.applied = true; return k }
func matters(k keyword0, why string) keyword0 { k.matters = why; return k }

// keywords is readconf.c's keyword table as of OpenSSH 10.5 (a config
// written for a newer ssh than the oracle must still load), plus the GSSAPI
// key exchange and keepalive keywords Debian's and Fedora's patched ssh
// accept. An unknown keyword is a warning (ssh stops at it) unless
// IgnoreUnknown lists it.
var keywords = map[string]keyword0{
	// readconf.c's deprecated, ignored and unsupported options.
	"protocol":                kw(kIgnore),
	"cipher":                  kw(kDeprecated),
	"fallbacktorsh":           kw(kDeprecated),
	"globalknownhostsfile2":   kw(kDeprecated),
	"rhostsauthentication":    kw(kDeprecated),
	"userknownhostsfile2":     kw(kDeprecated),
	"useroaming":              kw(kDeprecated),
	"usersh":                  kw(kDeprecated),
	"useprivilegedport":       kw(kDeprecated),
	"afstokenpassing":         kw(kUnsupported),
	"kerberosauthentication":  kw(kUnsupported),
	"kerberostgtpassing":      kw(kUnsupported),
	"rsaauthentication":       kw(kUnsupported),
	"rhostsrsaauthentication": kw(kUnsupported),
	"compressionlevel":        kw(kUnsupported),

	// What sshvpn applies.
	"host":                  kw(kHost),
	"match":                 kw(kMatch),
	"include":               kw(kInclude),
	"hostname":              applied(str1()),
	"user":                  applied(str1()),
	"port":                  applied(kw(kPort)),
	"identityfile":          applied(kw(kIdentityFile)),
	"identityfile2":         applied(kw(kIdentityFile)),
	"identitiesonly":        applied(flag()),
	"proxyjump":             applied(kw(kJump)),
	"proxycommand":          applied(kw(kCommand)), // refused by finish unless "none"
	"serveraliveinterval":   applied(kw(kTime)),
	"serveralivecountmax":   applied(kw(kInt)),
	"userknownhostsfile":    applied(kw(kHostFiles)),
	"globalknownhostsfile":  applied(kw(kHostFiles)),
	"stricthostkeychecking": applied(multi(strictValues...)),
	"hashknownhosts":        applied(flag()),
	"hostkeyalias":          applied(str1()),
	"tunnel":                applied(multi(tunnelValues...)),
	"tunneldevice":          applied(kw(kTunnelDevice)),
	"connecttimeout":        applied(kw(kTime)),
	"ciphers":               applied(kw(kCiphers)),
	"batchmode":             applied(flag()),
	"addressfamily":         applied(multi("inet", "inet6", "any")),
	"compression":           applied(multi("yes", "no")),
	"loglevel":              applied(kw(kLogLevel)),
	"ignoreunknown":         applied(str1()),
	"tag":                   applied(str1()),
	"refuseconnection":      applied(kw(kRefuse)),

	// Valid ssh_config that does not concern a tunnel, or that sshvpn
	// handles its own way: read, checked, not applied (a debug note).
	"gssapiauthentication":             flag(),
	"gssapidelegatecredentials":        flag(),
	"gssapikeyexchange":                flag(),
	"gssapitrustdns":                   flag(),
	"gssapirenewalforcesrekey":         flag(),
	"gssapiclientidentity":             str1(),
	"gssapiserveridentity":             str1(),
	"gssapikexalgorithms":              str1(),
	"protocolkeepalives":               kw(kTime),
	"setuptimeout":                     kw(kTime),
	"pkcs11provider":                   matters(str1(), "sshvpn does not load PKCS#11 keys"),
	"smartcarddevice":                  matters(str1(), "sshvpn does not load PKCS#11 keys"),
	"forwardagent":                     nargs(1, 1),
	"forwardx11":                       flag(),
	"forwardx11trusted":                flag(),
	"forwardx11timeout":                kw(kTime),
	"exitonforwardfailure":             flag(),
	"xauthlocation":                    str1(),
	"gatewayports":                     flag(),
	"passwordauthentication":           flag(),
	"kbdinteractiveauthentication":     flag(),
	"kbdinteractivedevices":            str1(),
	"challengeresponseauthentication":  flag(),
	"skeyauthentication":               flag(),
	"tisauthentication":                flag(),
	"pubkeyauthentication":             multi("yes", "no", "true", "false", "unbound", "host-bound"),
	"dsaauthentication":                multi("yes", "no", "true", "false", "unbound", "host-bound"),
	"hostbasedauthentication":          flag(),
	"certificatefile":                  matters(str1(), "sshvpn does not offer certificates"),
	"addkeystoagent":                   nargs(1, 2),
	"identityagent":                    matters(str1(), "sshvpn uses SSH_AUTH_SOCK"),
	"macs":                             applied(str1()),
	"remoteforward":                    matters(nargs(1, 2), "sshvpn forwards no remote ports"),
	"localforward":                     matters(nargs(1, 2), "sshvpn takes its forwards from the command line only: give -L"),
	"dynamicforward":                   matters(nargs(1, 1), "sshvpn takes its proxies from the command line only: give -D"),
	"permitremoteopen":                 nargs(1, 0),
	"escapechar":                       nargs(1, 1),
	"connectionattempts":               kw(kInt),
	"checkhostip":                      flag(),
	"tcpkeepalive":                     flag(),
	"keepalive":                        flag(),
	"numberofpasswordprompts":          kw(kInt),
	"syslogfacility":                   str1(),
	"logverbose":                       nargs(1, 0),
	"preferredauthentications":         str1(),
	"hostkeyalgorithms":                applied(str1()),
	"casignaturealgorithms":            str1(),
	"bindaddress":                      matters(str1(), "sshvpn does not bind the source address"),
	"bindinterface":                    matters(str1(), "sshvpn does not bind the source interface"),
	"clearallforwardings":              flag(),
	"enablesshkeysign":                 flag(),
	"verifyhostkeydns":                 multi(yesNoAsk...),
	"nohostauthenticationforlocalhost": flag(),
	"rekeylimit":                       nargs(1, 2),
	"sendenv":                          kw(kSendEnv),
	"setenv":                           kw(kSetEnv),
	"controlpath":                      str1(),
	"controlmaster":                    multi("yes", "no", "true", "false", "auto", "ask", "autoask"),
	"controlpersist":                   kw(kControlPersist),
	"localcommand":                     kw(kCommand),
	"permitlocalcommand":               flag(),
	"remotecommand":                    kw(kCommand),
	"visualhostkey":                    flag(),
	"kexalgorithms":                    applied(str1()),
	"ipqos":                            nargs(1, 2),
	"requesttty":                       multi("yes", "no", "true", "false", "force", "auto"),
	"sessiontype":                      multi("none", "subsystem", "default"),
	"stdinnull":                        flag(),
	"forkafterauthentication":          flag(),
	"proxyusefdpass":                   flag(),
	"canonicaldomains":                 nargs(1, 0),
	"canonicalizefallbacklocal":        flag(),
	"canonicalizehostname":             applied(multi("yes", "no", "true", "false", "always")),
	"canonicalizemaxdots":              kw(kInt),
	"canonicalizepermittedcnames":      nargs(1, 0),
	"streamlocalbindmask":              str1(),
	"streamlocalbindunlink":            flag(),
	"revokedhostkeys":                  matters(str1(), "sshvpn does not read a revoked host keys file"),
	"fingerprinthash":                  multi("md5", "sha1", "sha256", "sha384", "sha512"),
	"updatehostkeys":                   multi(yesNoAsk...),
	"hostbasedacceptedalgorithms":      str1(),
	"hostbasedkeytypes":                str1(),
	"pubkeyacceptedalgorithms":         str1(),
	"pubkeyacceptedkeytypes":           str1(),
	"securitykeyprovider":              str1(),
	"knownhostscommand":                matters(kw(kCommand), "sshvpn does not run KnownHostsCommand"),
	"requiredrsasize":                  kw(kInt),
	"enableescapecommandline":          flag(),
	"obscurekeystroketiming":           nargs(1, 1),
	"channeltimeout":                   nargs(1, 0),
	"versionaddendum":                  kw(kCommand),
	"warnweakcrypto":                   multi("yes", "no", "true", "false", "no-pq-kex"),
}

func kw(k kind) keyword0 { return keyword0{kind: k} }

// maxIdentityFiles and maxHostFiles are ssh's SSH_MAX_IDENTITY_FILES and
// SSH_MAX_HOSTS_FILES.
const (
	maxIdentityFiles = 100
	maxHostFiles     = 32
)

// keyword checks one keyword line and, when active, stores it. rest is the
// unsplit argument text (ProxyCommand and ProxyJump take it whole).
func (r *resolver) keyword(key string, k keyword0, args []string, rest, where string, active bool, st *fileState) error {
	consumed := 1 // how many arguments the kind takes; more is an error
	switch k.kind {
	case kIgnore, kIgnoredUnknown:
		return nil
	case kDeprecated:
		if active {
			r.note("%s: deprecated option %q", where, key)
		}
		return nil
	case kUnsupported:
		// ssh logs this as an error at the default level and goes on.
		r.warn("%s: unsupported option %q", where, key)
		return nil
	case kFlag, kMulti, kLogLevel:
		values := k.values
		switch k.kind {
		case kFlag:
			values = flagValues
		case kLogLevel:
			values = logLevels
		}
		if len(args) == 0 || !oneOf(args[0], values) {
			return fmt.Errorf("%s: unsupported option %q", where, firstArg(args))
		}
	case kInt:
		if _, err := atoiErr(firstArg(args)); err != nil {
			return fmt.Errorf("%s: integer value %s", where, err)
		}
	case kTime:
		a := firstArg(args)
		if a == "" {
			return fmt.Errorf("%s: missing time value", where)
		}
		if a == "none" {
			// readconf.c stores -1, which is "unset": a later line
			// still sets the value.
			active = false
		} else if _, err := convTime(a); err != nil {
			return fmt.Errorf("%s: invalid time value %q", where, a)
		}
	case kPort:
		a := firstArg(args)
		if a == "" {
			return fmt.Errorf("%s: missing argument", where)
		}
		if a2port(a) <= 0 {
			return fmt.Errorf("%s: bad port '%s'", where, a)
		}
	case kString, kIdentityFile, kRefuse:
		if firstArg(args) == "" {
			return fmt.Errorf("%s: missing argument", where)
		}
		if k.kind == kRefuse && active && len(args) == 1 {
			return fatalError{fmt.Errorf("%s: RefuseConnection: %s", where, args[0])}
		}
		if k.kind == kIdentityFile && active && len(r.identities) >= maxIdentityFiles {
			return fmt.Errorf("%s: too many identity files specified (max %d)", where, maxIdentityFiles)
		}
	case kCommand, kJump:
		consumed = len(args) + 1 // the whole line is the value
		args = []string{strings.TrimLeft(rest, " \t\r\n=")}
		if k.kind == kJump {
			v, err := parseJumpLine(args[0], active && !r.has("proxyjump") && !r.has("proxycommand"))
			if err != nil {
				return fmt.Errorf("%s: invalid ProxyJump %q", where, args[0])
			}
			args = []string{v}
			// parse_jump: a jump also claims ProxyCommand, and a
			// ProxyCommand obtained first makes ProxyJump ignored.
			if active && !r.has("proxycommand") && !r.has("proxyjump") {
				r.store("proxyjump", args, where)
				if !strings.EqualFold(v, "none") {
					r.store("proxycommand", []string{"none"}, where)
				}
			}
			return nil
		}
		if key == "proxycommand" && r.has("proxyjump") {
			return nil // readconf.c: ProxyCommand after ProxyJump is skipped
		}
	case kHostFiles:
		consumed = len(args)
		for i, a := range args {
			if a == "" {
				return fmt.Errorf("%s: keyword %s empty argument", where, key)
			}
			if strings.EqualFold(a, "none") && (i > 0 || len(args) > 1) {
				return fmt.Errorf("%s: keyword %s \"none\" argument must appear alone", where, key)
			}
		}
		if active && !r.has(key) && len(args) > maxHostFiles {
			return fmt.Errorf("%s: too many %s entries", where, key)
		}
	case kTunnelDevice:
		a := firstArg(args)
		if a == "" {
			return fmt.Errorf("%s: missing argument", where)
		}
		if _, _, err := ParseTunnelDevice(a); err != nil {
			return fmt.Errorf("%s: bad tun device: %w", where, err)
		}
	case kCiphers:
		a := firstArg(args)
		if a == "" {
			return fmt.Errorf("%s: missing argument", where)
		}
		if a[0] != '-' && !ciphersValid(strings.TrimLeft(a[:1], "+^")+a[1:]) {
			return fmt.Errorf("%s: Bad SSH2 cipher spec '%s'", where, a)
		}
	case kSendEnv, kSetEnv:
		consumed = len(args)
		for _, a := range args {
			if k.kind == kSendEnv && (a == "" || strings.Contains(a, "=")) {
				return fmt.Errorf("%s: invalid environment name", where)
			}
			if k.kind == kSetEnv && !strings.Contains(a, "=") {
				return fmt.Errorf("%s: invalid SetEnv", where)
			}
		}
		if len(args) == 0 {
			return fatalError{fmt.Errorf("%s: no %s specified", where, key)}
		}
	case kControlPersist:
		a := firstArg(args)
		if a == "" {
			return fmt.Errorf("%s: missing ControlPersist argument", where)
		}
		switch a {
		case "yes", "no", "true", "false":
		default:
			if _, err := convTime(a); err != nil {
				return fmt.Errorf("%s: bad ControlPersist argument", where)
			}
		}
	case kArgs:
		if len(args) < k.min || (len(args) > 0 && args[0] == "") {
			return fmt.Errorf("%s: missing argument", where)
		}
		consumed = len(args)
		if k.max > 0 && consumed > k.max {
			consumed = k.max
		}
	}
	if len(args) > consumed {
		return fmt.Errorf("%s: keyword %s extra arguments at end of line", where, key)
	}
	if !active {
		return nil
	}
	if !k.applied {
		if k.matters != "" {
			r.warn("%s: %s is not applied: %s", where, key, k.matters)
		} else {
			r.note("%s: %s does not concern a tunnel; not applied", where, key)
		}
		return nil
	}
	if key == "identityfile2" {
		key = "identityfile"
	}
	r.store(key, args, where)
	return nil
}

func firstArg(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}

func oneOf(s string, values []string) bool {
	for _, v := range values {
		if strings.EqualFold(s, v) {
			return true
		}
	}
	return false
}

// ciphersValid is cipher.c's ciphers_valid: every name known.
func ciphersValid(list string) bool {
	for _, c := range strings.Split(list, ",") {
		if !oneOf(c, cipherNames) || c != strings.ToLower(c) {
			return false
		}
	}
	return true
}

// The getters below read values that keyword has already validated.

func (r *resolver) str(key, def string) string {
	if s, ok := r.vals[key]; ok {
		return s.args[0]
	}
	return def
}

func (r *resolver) integer(key string, def int) int {
	n, err := atoiErr(r.str(key, ""))
	if err != nil {
		return def
	}
	return n
}

func (r *resolver) boolean(key string) bool {
	switch strings.ToLower(r.str(key, "no")) {
	case "yes", "true":
		return true
	}
	return false
}

func (r *resolver) duration(key string) time.Duration {
	d, err := convTime(r.str(key, "0"))
	if err != nil {
		return 0
	}
	return d
}

// hostName is HostName with %h expanded (or the host), lower-cased unless
// it is an address, as ssh.c does.
func (r *resolver) hostName() string {
	h := r.host
	if s, ok := r.vals["hostname"]; ok {
		if x, err := expandHostName(s.args[0], r.host); err == nil {
			h = x
		}
	}
	return lowerHost(h)
}

// atoiErr is misc.c atoi_err: strtonum(s, 0, INT_MAX).
func atoiErr(s string) (int, error) {
	if s == "" {
		return 0, fmt.Errorf("missing")
	}
	n, err := strtonum(s, 0, 1<<31-1)
	if err != nil {
		return 0, err
	}
	return int(n), nil
}

// strtonum is OpenBSD's strtonum: strtoll (leading white space, a sign,
// decimal digits, nothing after) within [min, max].
func strtonum(s string, min, max int64) (int64, error) {
	t := strings.TrimLeft(s, " \t\n\v\f\r")
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return 0, fmt.Errorf("too large")
		}
		return 0, fmt.Errorf("invalid")
	}
	if n < min {
		return 0, fmt.Errorf("too small")
	}
	if n > max {
		return 0, fmt.Errorf("too large")
	}
	return n, nil
}
