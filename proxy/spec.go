package proxy

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// The listen and forward specifications of ssh's -D and -L (man ssh), with
// ssh's defaults for a client whose GatewayPorts is no: no bind address or
// "localhost" means loopback (127.0.0.1 and [::1]); "*" or an empty one
// (":1080") means every interface. As in ssh, fields are separated by ':'
// or '/', and an IPv6 address goes in brackets.

var errSpec = errors.New("bad forward specification")

// ParseDynamic parses -D's [bind_address:]port (and --http-proxy's) into
// the addresses to listen on.
func ParseDynamic(spec string) (binds []string, err error) {
	f, err := splitSpec(spec)
	if err != nil {
		return nil, err
	}
	switch len(f) {
	case 1:
		return listenAddrs(nil, f[0], spec)
	case 2:
		return listenAddrs(&f[0], f[1], spec)
	}
	return nil, fmt.Errorf("%w %q: want [bind_address:]port", errSpec, spec)
}

// ParseLocal parses -L's [bind_address:]port:host:hostport, where host may
// be a bracketed IPv6 address. Unix-socket forms are not supported.
func ParseLocal(spec string) (binds []string, host string, port uint16, err error) {
	if strings.HasPrefix(spec, "/") || strings.Contains(spec, ":/") {
		return nil, "", 0, fmt.Errorf("%w %q: Unix-socket forwards are not supported", errSpec, spec)
	}
	f, err := splitSpec(spec)
	if err != nil {
		return nil, "", 0, err
	}
	var bind *string
	switch len(f) {
	case 3:
	case 4:
		bind, f = &f[0], f[1:]
	default:
		return nil, "", 0, fmt.Errorf("%w %q: want [bind_address:]port:host:hostport (an IPv6 host in brackets)", errSpec, spec)
	}
	if f[1] == "" {
		return nil, "", 0, fmt.Errorf("%w %q: empty host", errSpec, spec)
	}
	port, err = parsePort(f[2], spec)
	if err != nil {
		return nil, "", 0, err
	}
	if port == 0 {
		return nil, "", 0, fmt.Errorf("%w %q: hostport 0", errSpec, spec)
	}
	binds, err = listenAddrs(bind, f[0], spec)
	return binds, f[1], port, err
}

// splitSpec splits at ':' or '/' outside brackets and strips the brackets
// around a field, as ssh's hpdelim does.
func splitSpec(spec string) ([]string, error) {
	var fields []string
	for s := spec; ; {
		var field string
		if strings.HasPrefix(s, "[") {
			end := strings.IndexByte(s, ']')
			if end < 0 {
				return nil, fmt.Errorf("%w %q: unclosed '['", errSpec, spec)
			}
			field, s = s[1:end], s[end+1:]
			if s != "" && s[0] != ':' && s[0] != '/' {
				return nil, fmt.Errorf("%w %q: ']' must be followed by ':'", errSpec, spec)
			}
		} else {
			end := strings.IndexAny(s, ":/")
			if end < 0 {
				end = len(s)
			}
			field, s = s[:end], s[end:]
		}
		fields = append(fields, field)
		if s == "" {
			return fields, nil
		}
		s = s[1:]
	}
}

func parsePort(p, spec string) (uint16, error) {
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("%w %q: bad port %q (want 0 to 65535)", errSpec, spec, p)
	}
	return uint16(n), nil
}

// listenAddrs applies ssh's bind-address defaults.
func listenAddrs(bind *string, port, spec string) ([]string, error) {
	p, err := parsePort(port, spec)
	if err != nil {
		return nil, err
	}
	ps := strconv.Itoa(int(p))
	switch {
	case bind == nil || *bind == "localhost":
		return []string{net.JoinHostPort("127.0.0.1", ps), net.JoinHostPort("::1", ps)}, nil
	case *bind == "" || *bind == "*":
		return []string{":" + ps}, nil
	}
	return []string{net.JoinHostPort(*bind, ps)}, nil
}
