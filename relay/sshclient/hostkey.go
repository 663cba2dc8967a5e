package sshclient

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// ErrHostKeyVerification is returned (wrapped) when the server's host key
// was not accepted. The reason has already been written to Dialer.Stderr in
// OpenSSH's words, ending with "Host key verification failed.".
var ErrHostKeyVerification = errors.New("host key verification failed")

// hostKeyChecker applies known_hosts and StrictHostKeyChecking to one
// connection. Texts follow openssh-portable sshconnect.c check_host_key and
// warn_changed_key.
type hostKeyChecker struct {
	cfg    *Config
	addr   string // host:port as looked up in known_hosts
	prompt Prompter
	stderr io.Writer
	log    *slog.Logger
}

func newHostKeyChecker(cfg *Config, d *Dialer) *hostKeyChecker {
	// OpenSSH looks a HostKeyAlias up alone, without the port; port 22 is
	// what makes knownhosts do the same.
	port := cfg.Port
	if cfg.HostKeyAlias != "" {
		port = 22
	}
	h := &hostKeyChecker{
		cfg:    cfg,
		addr:   net.JoinHostPort(firstNonEmpty(cfg.HostKeyAlias, cfg.HostName), strconv.Itoa(port)),
		stderr: d.stderr(),
		log:    d.logger(),
	}
	if !cfg.BatchMode {
		h.prompt = d.Prompt
	}
	return h
}

// display is the host as OpenSSH prints it: host, or [host]:port.
func (h *hostKeyChecker) display() string { return knownhosts.Normalize(h.addr) }

// lookup checks key against the known_hosts files that exist.
func (h *hostKeyChecker) lookup(remote net.Addr, key ssh.PublicKey) error {
	var files []string
	for _, f := range append(append([]string(nil), h.cfg.UserKnownHostsFiles...), h.cfg.GlobalKnownHostsFiles...) {
		if _, err := os.Stat(f); err == nil {
			files = append(files, f)
		}
	}
	if len(files) == 0 {
		return &knownhosts.KeyError{}
	}
	cb, err := knownhosts.New(files...)
	if err != nil {
		return fmt.Errorf("read known hosts: %w", err)
	}
	return cb(h.addr, remote, key)
}

// check is the ssh.HostKeyCallback.
func (h *hostKeyChecker) check(_ string, remote net.Addr, key ssh.PublicKey) error {
	err := h.lookup(remote, key)
	if cert, ok := key.(*ssh.Certificate); ok && err != nil {
		if _, revoked := errors.AsType[*knownhosts.RevokedError](err); !revoked {
			// As ssh does: "No matching CA found. Retry with plain key".
			h.log.Debug("no @cert-authority for the host certificate; checking its plain key", "err", err)
			key = cert.Key
			err = h.lookup(remote, key)
		}
	}
	var revoked *knownhosts.RevokedError
	var keyErr *knownhosts.KeyError
	switch {
	case err == nil:
		h.log.Debug("host key known", "host", h.display(), "type", keyTypeName(key))
		return nil
	case errors.As(err, &revoked):
		h.warnRevoked(key)
		return h.fail()
	case errors.As(err, &keyErr) && len(keyErr.Want) == 0:
		return h.unknown(remote, key)
	case errors.As(err, &keyErr):
		// Unlike OpenSSH, a key of a type not yet known for a known host is
		// treated as changed too: never silently trust a key.
		h.warnChanged(key, keyErr.Want)
		return h.fail()
	}
	return err
}

func (h *hostKeyChecker) fail() error {
	fmt.Fprintln(h.stderr, "Host key verification failed.")
	return ErrHostKeyVerification
}

// unknown handles a host with no key in known_hosts.
func (h *hostKeyChecker) unknown(remote net.Addr, key ssh.PublicKey) error {
	typ := keyTypeName(key)
	mode := h.cfg.StrictHostKeyChecking
	if mode == "ask" && h.prompt == nil {
		mode = "yes" // ssh cannot ask either; it fails
	}
	switch mode {
	case "yes":
		fmt.Fprintf(h.stderr, "No %s host key is known for %s and you have requested strict checking.\n",
			typ, h.display())
		return h.fail()
	case "ask":
		ok, err := h.confirm(remote, key)
		if err != nil || !ok {
			return h.fail()
		}
	}
	h.add(key)
	return nil
}

// confirm asks like sshconnect.c's confirm(): yes, no, or the fingerprint.
func (h *hostKeyChecker) confirm(remote net.Addr, key ssh.PublicKey) (bool, error) {
	fp := ssh.FingerprintSHA256(key)
	ip := "<no hostip for proxy command>"
	if a, ok := remote.(*net.TCPAddr); ok && !a.IP.IsUnspecified() {
		ip = a.IP.String()
	}
	prompt := fmt.Sprintf("The authenticity of host '%s (%s)' can't be established.\n"+
		"%s key fingerprint is: %s\n"+
		"Are you sure you want to continue connecting (yes/no/[fingerprint])? ",
		h.display(), ip, keyTypeName(key), fp)
	for {
		ans, err := h.prompt.ReadLine(prompt)
		if err != nil {
			return false, err
		}
		switch ans = strings.TrimSpace(ans); {
		case strings.EqualFold(ans, "yes"), ans == fp:
			return true, nil
		case strings.EqualFold(ans, "no"):
			return false, nil
		}
		prompt = "Please type 'yes', 'no' or the fingerprint: "
	}
}

// add appends the key to the first UserKnownHostsFile, hashed when
// HashKnownHosts is set. Like ssh, a failure is reported and the
// connection goes on.
func (h *hostKeyChecker) add(key ssh.PublicKey) {
	if len(h.cfg.UserKnownHostsFiles) == 0 {
		return
	}
	file := h.cfg.UserKnownHostsFiles[0]
	host := h.display()
	if h.cfg.HashKnownHosts {
		host = knownhosts.HashHostname(host)
	}
	line := host + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key))) + "\n"
	if err := appendLine(file, line); err != nil {
		h.log.Debug("add known host", "file", file, "err", err)
		fmt.Fprintf(h.stderr, "Failed to add the host to the list of known hosts (%s).\n", file)
		return
	}
	fmt.Fprintf(h.stderr, "Warning: Permanently added '%s' (%s) to the list of known hosts.\n",
		h.display(), keyTypeName(key))
}

func appendLine(file, line string) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(file, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
			line = "\n" + line
		}
	}
	_, err = f.WriteString(line)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// warnChanged prints sshconnect.c's warn_changed_key and what follows it.
func (h *hostKeyChecker) warnChanged(key ssh.PublicKey, want []knownhosts.KnownKey) {
	off := want[0]
	for _, w := range want {
		if w.Key.Type() == key.Type() {
			off = w
		}
	}
	addFile := off.Filename
	if len(h.cfg.UserKnownHostsFiles) > 0 {
		addFile = h.cfg.UserKnownHostsFiles[0]
	}
	typ := keyTypeName(key)
	fmt.Fprintf(h.stderr, `@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
Someone could be eavesdropping on you right now (man-in-the-middle attack)!
It is also possible that a host key has just been changed.
The fingerprint for the %s key sent by the remote host is
%s.
Please contact your system administrator.
Add correct host key in %s to get rid of this message.
Offending %s key in %s:%d
Host key for %s has changed and you have requested strict checking.
`, typ, ssh.FingerprintSHA256(key), addFile, keyTypeName(off.Key), off.Filename, off.Line, h.display())
}

func (h *hostKeyChecker) warnRevoked(key ssh.PublicKey) {
	typ := keyTypeName(key)
	fmt.Fprintf(h.stderr, `@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@       WARNING: REVOKED HOST KEY DETECTED!               @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
The %s host key for %s is marked as revoked.
This could mean that a stolen key is being used to
impersonate this host.
%s host key for %s was revoked and you have requested strict checking.
`, typ, h.display(), typ, h.display())
}

// algorithms orders host key algorithms so the types already known for the
// host come first, as sshconnect.c order_hostkeyalgs does; otherwise a
// server could present a key type not yet known and force a prompt.
func (h *hostKeyChecker) algorithms() []string {
	_, probe, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil
	}
	signer, err := ssh.NewSignerFromKey(probe)
	if err != nil {
		return nil
	}
	var keyErr *knownhosts.KeyError
	if err := h.lookup(&net.TCPAddr{IP: net.IPv4zero}, signer.PublicKey()); !errors.As(err, &keyErr) || len(keyErr.Want) == 0 {
		return nil // nothing known: x/crypto/ssh's defaults
	}
	var first []string
	for _, w := range keyErr.Want {
		if w.Key.Type() == ssh.KeyAlgoRSA {
			first = append(first, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256)
			continue
		}
		first = append(first, w.Key.Type())
	}
	out := first
	for _, a := range ssh.SupportedAlgorithms().HostKeys {
		out = appendUnique(out, a)
	}
	return out
}

// keyTypeName is OpenSSH's sshkey_type: "ED25519", "RSA", "ECDSA", ...
func keyTypeName(k ssh.PublicKey) string {
	t := k.Type()
	cert := strings.HasSuffix(t, "-cert-v01@openssh.com")
	t = strings.TrimSuffix(t, "-cert-v01@openssh.com")
	var name string
	switch {
	case t == ssh.KeyAlgoRSA:
		name = "RSA"
	case t == ssh.KeyAlgoDSA:
		name = "DSA"
	case t == ssh.KeyAlgoED25519:
		name = "ED25519"
	case t == ssh.KeyAlgoSKED25519, t == "sk-ssh-ed25519":
		name = "ED25519-SK"
	case t == ssh.KeyAlgoSKECDSA256, t == "sk-ecdsa-sha2-nistp256":
		name = "ECDSA-SK"
	case strings.HasPrefix(t, "ecdsa-sha2-"):
		name = "ECDSA"
	default:
		name = strings.ToUpper(t)
	}
	if cert {
		name += "-CERT"
	}
	return name
}
