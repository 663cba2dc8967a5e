package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strconv"

	"github.com/sshvpn/sshvpn/relay/gateway"
)

// checkServeConfig is serve --check, as sshd -t: it prints every problem
// of the flags, the --config file and the authorized_keys file, each as
// file:line where it has one, and fails if there was one. It opens no
// listener, device or journal, and creates no host key.
func checkServeConfig(c *serveConfig, problems []error, stdout, stderr io.Writer) error {
	problems = append(problems, checkFiles(c)...)
	for _, p := range problems {
		fmt.Fprintln(stderr, p)
	}
	if len(problems) > 0 {
		return &exitError{1, nil}
	}
	n, _, _ := gateway.CheckAuthorizedKeys(c.authorizedKeys)
	src := "flags"
	if c.configFile != "" {
		src = c.configFile
	}
	fmt.Fprintf(stdout, "sshvpn serve --check: %s good; %d keys in %s\n", src, n, c.authorizedKeys)
	return nil
}

// checkFiles checks what the gateway would read at start: the listen
// address, the host key if there is one, and authorized_keys line by line
// with the gateway's own parser.
func checkFiles(c *serveConfig) []error {
	var errs []error
	if _, port, err := net.SplitHostPort(c.listen); err != nil {
		errs = append(errs, fmt.Errorf("--listen %s: %w", c.listen, err))
	} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		if _, err := net.LookupPort("tcp", port); err != nil {
			errs = append(errs, fmt.Errorf("--listen %s: %w", c.listen, err))
		}
	}
	// A missing host key is made at start; an existing one must load.
	if _, err := os.Stat(c.hostKey); err == nil {
		if _, err := gateway.LoadOrCreateHostKey(c.hostKey, nil); err != nil {
			errs = append(errs, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("--host-key: %w", err))
	}
	_, skipped, err := gateway.CheckAuthorizedKeys(c.authorizedKeys)
	if err != nil {
		errs = append(errs, err)
	}
	for _, le := range skipped {
		errs = append(errs, le)
	}
	return errs
}
