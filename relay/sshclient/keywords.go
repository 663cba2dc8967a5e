package sshclient

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// keywordCheck validates the arguments of one keyword; every line is
// checked, applied or not, as readconf.c does.
type keywordCheck func(args []string) error

// keywords are the ssh_config keywords sshvpn applies. Any other keyword is
// recorded in Config.Notes and otherwise ignored (ssh would refuse unknown
// ones; sshvpn must start on configs written for newer or other clients).
var keywords = map[string]keywordCheck{
	"hostname":              checkHostName,
	"user":                  oneArg,
	"port":                  checkPort,
	"identityfile":          oneArg,
	"identitiesonly":        checkEnum("yes", "no", "true", "false"),
	"proxyjump":             checkJump,
	"proxycommand":          anyArgs, // refused by finish unless "none"
	"serveraliveinterval":   checkTime,
	"serveralivecountmax":   checkCount,
	"userknownhostsfile":    anyArgs,
	"globalknownhostsfile":  anyArgs,
	"stricthostkeychecking": checkEnum("yes", "no", "true", "false", "off", "ask", "accept-new"),
	"hashknownhosts":        checkEnum("yes", "no", "true", "false"),
	"hostkeyalias":          oneArg,
	"tunnel":                checkEnum("yes", "no", "true", "false", "point-to-point", "ethernet"),
	"tunneldevice":          checkTunnelDevice,
	"connecttimeout":        checkTime,
	"ciphers":               oneArg,
	"batchmode":             checkEnum("yes", "no", "true", "false"),
}

// keyword validates and, when active, stores one keyword line.
func (r *resolver) keyword(key string, args []string, where string, active bool) error {
	check, ok := keywords[key]
	if !ok {
		r.note("%s: ignored keyword %s", where, key)
		return nil
	}
	if err := check(args); err != nil {
		return fmt.Errorf("%s: %s: %w", where, key, err)
	}
	if active {
		r.store(key, args, where)
	}
	return nil
}

func anyArgs([]string) error { return nil }

func oneArg(args []string) error {
	if len(args) > 1 {
		return fmt.Errorf("garbage at end of line: %q", args[1])
	}
	return nil
}

func checkEnum(values ...string) keywordCheck {
	return func(args []string) error {
		if err := oneArg(args); err != nil {
			return err
		}
		for _, v := range values {
			if strings.EqualFold(args[0], v) {
				return nil
			}
		}
		return fmt.Errorf("unsupported value %q (want %s)", args[0], strings.Join(values, ", "))
	}
}

func checkPort(args []string) error {
	if err := oneArg(args); err != nil {
		return err
	}
	if n, err := strconv.Atoi(args[0]); err != nil || n <= 0 || n > 65535 {
		return fmt.Errorf("badly formatted port number %q", args[0])
	}
	return nil
}

func checkCount(args []string) error {
	if err := oneArg(args); err != nil {
		return err
	}
	if n, err := strconv.Atoi(args[0]); err != nil || n < 0 {
		return fmt.Errorf("bad number %q", args[0])
	}
	return nil
}

func checkTime(args []string) error {
	if err := oneArg(args); err != nil {
		return err
	}
	if strings.EqualFold(args[0], "none") {
		return nil
	}
	_, err := convTime(args[0])
	return err
}

func checkHostName(args []string) error {
	if err := oneArg(args); err != nil {
		return err
	}
	_, err := expandHostName(args[0], "h")
	return err
}

func checkJump(args []string) error {
	if err := oneArg(args); err != nil {
		return err
	}
	_, err := ParseJump(args[0])
	return err
}

func checkTunnelDevice(args []string) error {
	if err := oneArg(args); err != nil {
		return err
	}
	_, _, err := ParseTunnelDevice(args[0])
	return err
}

// The getters below read values that keyword has already validated.

func (r *resolver) str(key, def string) string {
	if s, ok := r.vals[key]; ok {
		return s.args[0]
	}
	return def
}

func (r *resolver) integer(key string, def int) int {
	n, err := strconv.Atoi(r.str(key, ""))
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
