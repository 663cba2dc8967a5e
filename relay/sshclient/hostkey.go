package sshclient

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// ErrHostKeyVerification is returned (wrapped) when the server's host key
// was not accepted. The reason has already been written to Dialer.Stderr in
// OpenSSH's words, ending with "Host key verification failed.".
var ErrHostKeyVerification = errors.New("host key verification failed")

// hostKeyChecker decides on the server's host key the way ssh's
// sshconnect.c check_host_key does (openssh-portable 9.2 to 10.x) with
// ssh's defaults for what Config cannot set: CheckHostIP no,
// HostKeyAlgorithms and CASignatureAlgorithms as shipped, no
// KnownHostsCommand, RevokedHostKeys or VerifyHostKeyDNS. It differs
// where ssh would go on, and refuses instead:
//
//   - A changed or revoked key aborts whatever StrictHostKeyChecking says.
//     With "no", ssh connects but disables all forwarding, tunnels
//     included; sshvpn only ever wants the tunnel, so it stops, as
//     ssh -w -o ExitOnForwardFailure=yes does.
//   - A key found @revoked under the port-less name while checking a host
//     on another port stays refused; ssh 9.2 and 10.0 then go on to add it
//     under "[host]:port" (accept-new, or ask answered yes).
//   - A certificate without principals is invalid ("Certificate lacks
//     principal list"), as from OpenSSH 10.3 (CVE-2024-7594); 9.2 and 10.0
//     take it as valid for every host. Principals are compared verbatim, as
//     9.2 and 10.0 do (10.3 takes them as patterns).
type hostKeyChecker struct {
	cfg      *Config
	addr     string // host:port handed to x/crypto/ssh
	hostname string // HostName lower-cased, as ssh_login lower-cases it
	prompt   Prompter
	stderr   io.Writer
	log      *slog.Logger
	now      func() time.Time // tests move the clock
	// accepted is the key the first key exchange accepted. A re-key that
	// presents it again passes without a second look, as in ssh
	// (verify_host_key's previous_host_key): no warning printed twice, no
	// different answer because known_hosts changed since.
	accepted ssh.PublicKey
}

func newHostKeyChecker(cfg *Config, d *Dialer) *hostKeyChecker {
	h := &hostKeyChecker{
		cfg:      cfg,
		addr:     net.JoinHostPort(firstNonEmpty(cfg.HostKeyAlias, cfg.HostName), strconv.Itoa(cfg.Port)),
		hostname: asciiLower(cfg.HostName),
		stderr:   d.stderr(),
		log:      d.logger(),
		now:      time.Now,
	}
	if !cfg.BatchMode {
		h.prompt = d.Prompt
	}
	return h
}

// lookupName is the name known_hosts is searched for (sshconnect.c
// get_hostfile_hostname_ipaddr): HostKeyAlias as it is, else the host,
// as "[host]:port" unless port is 22 or 0 (put_host_port).
func (h *hostKeyChecker) lookupName(port int) string {
	if h.cfg.HostKeyAlias != "" {
		return h.cfg.HostKeyAlias
	}
	return hostPort(h.hostname, port)
}

func hostPort(host string, port int) string {
	if port == 0 || port == defaultPort {
		return host
	}
	return "[" + host + "]:" + strconv.Itoa(port)
}

// display is the host as ssh names it in its messages.
func (h *hostKeyChecker) display() string { return h.lookupName(h.cfg.Port) }

// certName is what a host certificate must list as a principal.
func (h *hostKeyChecker) certName() string { return firstNonEmpty(h.cfg.HostKeyAlias, h.hostname) }

func (h *hostKeyChecker) files() []string {
	return append(append([]string(nil), h.cfg.UserKnownHostsFiles...), h.cfg.GlobalKnownHostsFiles...)
}

// lookupMode is check_host_key's readonly argument.
type lookupMode int

const (
	readWrite lookupMode = iota // may add the key to the first UserKnownHostsFile
	readOnly                    // never writes
	readQuiet                   // never writes, and a changed key fails silently
)

// errRefused ends a check that has already said why on stderr (or had
// nothing to say); check turns it into ErrHostKeyVerification.
var errRefused = errors.New("host key refused")

// errRevokedKey is errRefused for a revoked key: final, no retry.
var errRevokedKey = errors.New("host key revoked")

// check is the ssh.HostKeyCallback. x/crypto/ssh calls it on every key
// exchange of the connection, one at a time.
func (h *hostKeyChecker) check(_ string, remote net.Addr, key ssh.PublicKey) error {
	if h.accepted != nil && equalKey(h.accepted, key) {
		h.log.Debug("host key matches the key accepted before", "type", keyTypeName(key))
		return nil
	}
	if cert, ok := key.(*ssh.Certificate); ok {
		// ssh verifies the CA's signature when it parses the certificate;
		// a bad one fails the key exchange, with no retry of the plain key.
		if err := verifyCertSignature(cert); err != nil {
			return fmt.Errorf("host certificate %s: %w", ssh.FingerprintSHA256(cert), err)
		}
	}
	if err := h.checkKey(remote, key, h.cfg.Port, readWrite, false); err != nil {
		fmt.Fprintln(h.stderr, "Host key verification failed.")
		return ErrHostKeyVerification
	}
	h.accepted = key
	return nil
}

// checkKey is check_host_key: look the key up under the name for port; a
// certificate that fails is retried as its plain key.
func (h *hostKeyChecker) checkKey(remote net.Addr, key ssh.PublicKey, port int, mode lookupMode, portless bool) error {
	if strings.ContainsAny(h.hostname, "@?*#[]|'\"\\") {
		h.log.Debug("invalid host name; will not record it", "host", h.hostname)
		mode = readOnly // never write a name that would read back as a pattern
	}
	host := h.lookupName(port)
	hk := loadHostKeys(host, h.files(), h.log)
	if mode == readWrite && len(h.cfg.UserKnownHostsFiles) == 0 {
		mode = readOnly
	}
	for {
		status, found := hk.check(key)
		err := h.decide(remote, key, hk, host, port, mode, portless, status, found)
		_, isCert := key.(*ssh.Certificate)
		if err == nil || !isCert || status == hostRevoked || errors.Is(err, errRevokedKey) {
			return err
		}
		h.log.Debug("No matching CA found. Retry with plain key", "host", host)
		key = plainKey(key)
	}
}

// decide is check_host_key's switch on the lookup's status.
func (h *hostKeyChecker) decide(remote net.Addr, key ssh.PublicKey, hk hostKeys, host string, port int,
	mode lookupMode, portless bool, status hostStatus, found *hostEntry) error {
	cert, isCert := key.(*ssh.Certificate)
	switch status {
	case hostOK:
		if isCert {
			if reason := certHostProblem(cert, h.certName(), h.now()); reason != "" {
				fmt.Fprintln(h.stderr, reason)
				return errRefused
			}
		}
		h.log.Debug("host key known", "host", host, "type", keyTypeName(key), "file", found.file, "line", found.line)
		return nil
	case hostNew:
		if h.cfg.HostKeyAlias == "" && port != 0 && port != defaultPort && !portless {
			// ssh: "checking without port identifier".
			err := h.checkKey(remote, key, 0, readQuiet, true)
			if err == nil || errors.Is(err, errRevokedKey) {
				return err
			}
		}
		if mode != readWrite || isCert {
			return errRefused
		}
		return h.unknown(remote, key, host, port)
	case hostRevoked:
		h.warnRevoked(host, key)
		return errRevokedKey
	}
	// hostChanged
	if isCert {
		// Only debug, as in ssh: a CA for *.example.org need not sign
		// every host that matches.
		h.log.Debug("host certificate authority does not match @cert-authority", "file", found.file, "line", found.line)
		return errRefused
	}
	if mode == readQuiet {
		return errRefused
	}
	h.warnChanged(host, key, found)
	return errRefused
}

// unknown handles a key that nothing in known_hosts names.
func (h *hostKeyChecker) unknown(remote net.Addr, key ssh.PublicKey, host string, port int) error {
	mode := h.cfg.StrictHostKeyChecking
	if mode == "ask" && h.prompt == nil {
		return errRefused // ssh's confirm() fails at once, saying nothing more
	}
	switch mode {
	case "yes":
		fmt.Fprintf(h.stderr, "No %s host key is known for %s and you have requested strict checking.\n",
			keyTypeName(key), host)
		return errRefused
	case "ask":
		ok, err := h.confirm(remote, key, host, port)
		if err != nil || !ok {
			return errRefused
		}
	}
	h.add(host, key)
	return nil
}

// confirm asks like sshconnect.c: the question, then confirm()'s loop.
func (h *hostKeyChecker) confirm(remote net.Addr, key ssh.PublicKey, host string, port int) (bool, error) {
	fp := ssh.FingerprintSHA256(key)
	ip := "<no hostip for proxy command>"
	if a, ok := remote.(*net.TCPAddr); ok && !a.IP.IsUnspecified() {
		ip = hostPort(a.IP.String(), port)
	}
	prompt := fmt.Sprintf("The authenticity of host '%s (%s)' can't be established.\n"+
		"%s key fingerprint is: %s\n%s\n"+
		"Are you sure you want to continue connecting (yes/no/[fingerprint])? ",
		host, ip, keyTypeName(key), fp, h.otherNamesMessage(host, key))
	for {
		ans, err := h.prompt.ReadLine(prompt)
		if err != nil {
			return false, err
		}
		ans = trimBlank(ans)
		if i := strings.IndexAny(ans, " \t\n"); i >= 0 {
			ans = ans[:i]
		}
		switch {
		case ans == "" || strings.EqualFold(ans, "no"):
			return false, nil
		case strings.EqualFold(ans, "yes"), ans == fp:
			return true, nil
		}
		prompt = "Please type 'yes', 'no' or the fingerprint: "
	}
}

// maxOtherNames is how many other names the prompt lists (MAX_OTHER_NAMES).
const maxOtherNames = 8

func (h *hostKeyChecker) otherNamesMessage(host string, key ssh.PublicKey) string {
	names := otherNames(host, key, h.files(), h.cfg.env.home, h.log)
	if len(names) == 0 {
		return "This key is not known by any other names."
	}
	msg := "This host key is known by the following other names/addresses:"
	for _, n := range names[:min(len(names), maxOtherNames)] {
		msg += "\n    " + n
	}
	if len(names) > maxOtherNames {
		msg += fmt.Sprintf("\n    (%d additional names omitted)", len(names)-maxOtherNames)
	}
	return msg
}

// add appends the key to the first UserKnownHostsFile, hashed when
// HashKnownHosts is set. Like ssh, a failure is reported and the
// connection goes on.
func (h *hostKeyChecker) add(host string, key ssh.PublicKey) {
	file := h.cfg.UserKnownHostsFiles[0]
	if err := appendKnownHost(file, knownHostsEntry(host, key, h.cfg.HashKnownHosts)); err != nil {
		h.log.Debug("add known host", "file", file, "err", err)
		fmt.Fprintf(h.stderr, "Failed to add the host to the list of known hosts (%s).\n", file)
		return
	}
	if !h.cfg.quiet() { // ssh's logit: INFO, not shown under -q
		fmt.Fprintf(h.stderr, "Warning: Permanently added '%s' (%s) to the list of known hosts.\n",
			host, keyTypeName(key))
	}
}

// warnChanged prints sshconnect.c's warn_changed_key and what follows it;
// found is the entry ssh reports, the last other key known for the host.
func (h *hostKeyChecker) warnChanged(host string, key ssh.PublicKey, found *hostEntry) {
	addFile := found.file
	switch {
	case len(h.cfg.UserKnownHostsFiles) > 0:
		addFile = h.cfg.UserKnownHostsFiles[0]
	case len(h.cfg.GlobalKnownHostsFiles) > 0:
		addFile = h.cfg.GlobalKnownHostsFiles[0]
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
`, typ, ssh.FingerprintSHA256(key), addFile, keyTypeName(found.key), found.file, found.line)
	if h.cfg.StrictHostKeyChecking == "no" {
		// ssh would go on with forwarding and tunnels disabled: for a
		// tunnel, a refusal, and sshvpn says so rather than claim strictness.
		fmt.Fprintf(h.stderr, "Host key for %s has changed; sshvpn refuses it even with StrictHostKeyChecking no.\n", host)
		return
	}
	fmt.Fprintf(h.stderr, "Host key for %s has changed and you have requested strict checking.\n", host)
}

func (h *hostKeyChecker) warnRevoked(host string, key ssh.PublicKey) {
	typ := keyTypeName(key)
	fmt.Fprintf(h.stderr, `@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@       WARNING: REVOKED HOST KEY DETECTED!               @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
The %s host key for %s is marked as revoked.
This could mean that a stolen key is being used to
impersonate this host.
%s host key for %s was revoked and you have requested strict checking.
`, typ, host, typ, host)
}

// verifyCertSignature checks the CA's signature over the certificate: the
// signed bytes are the certificate's wire form up to its signature field.
// (x/crypto's CertChecker does the same, but only together with its own
// principal and validity rules and messages.)
func verifyCertSignature(c *ssh.Certificate) error {
	if c.Signature == nil || c.SignatureKey == nil {
		return errors.New("certificate is not signed")
	}
	blob, sig := c.Marshal(), ssh.Marshal(c.Signature)
	n := len(blob) - 4 - len(sig)
	if n < 0 || !bytes.Equal(blob[n+4:], sig) {
		return errors.New("certificate signature field is malformed")
	}
	if err := c.SignatureKey.Verify(blob[:n], c.Signature); err != nil {
		return fmt.Errorf("certificate signature by CA %s does not verify: %w", ssh.FingerprintSHA256(c.SignatureKey), err)
	}
	return nil
}

// defaultCASignatureAlgorithms is ssh's CASignatureAlgorithms default
// (SSH_ALLOWED_CA_SIGALGS): no SHA-1 RSA signatures.
var defaultCASignatureAlgorithms = []string{
	ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
	ssh.KeyAlgoSKED25519, ssh.KeyAlgoSKECDSA256, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256,
}

// certHostProblem is sshkey_cert_check_host: "" for a host certificate
// that is valid now for name, else ssh's reason, in ssh's order.
func certHostProblem(c *ssh.Certificate, name string, now time.Time) string {
	if c.CertType != ssh.HostCert {
		return "Certificate invalid: not a host certificate"
	}
	if now.Unix() < 0 || uint64(now.Unix()) < c.ValidAfter {
		return "Certificate invalid: not yet valid"
	}
	if uint64(now.Unix()) >= c.ValidBefore {
		return "Certificate invalid: expired"
	}
	if len(c.ValidPrincipals) == 0 {
		return "Certificate lacks principal list"
	}
	if !slices.Contains(c.ValidPrincipals, name) {
		return "Certificate invalid: name is not a listed principal"
	}
	if len(c.CriticalOptions) != 0 {
		return "Certificate contains unsupported critical options"
	}
	if c.Signature == nil || !slices.Contains(defaultCASignatureAlgorithms, c.Signature.Format) {
		return "Certificate signed with disallowed algorithm"
	}
	return ""
}

// defaultHostKeyAlgorithms is ssh's HostKeyAlgorithms default
// (KEX_DEFAULT_PK_ALG in myproposal.h), less what x/crypto/ssh cannot do.
func defaultHostKeyAlgorithms() []string {
	supported := ssh.SupportedAlgorithms().HostKeys
	var out []string
	for _, a := range []string{
		ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01,
		ssh.CertAlgoSKED25519v01, ssh.CertAlgoSKECDSA256v01, ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01,
		ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
		ssh.KeyAlgoSKED25519, ssh.KeyAlgoSKECDSA256, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256,
	} {
		if slices.Contains(supported, a) {
			out = append(out, a)
		}
	}
	return out
}

// algorithmKeyType is the plain key type an algorithm's keys have.
func algorithmKeyType(alg string) string {
	switch alg {
	case ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSASHA512, ssh.CertAlgoRSASHA256v01, ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSAv01:
		return ssh.KeyAlgoRSA
	case ssh.CertAlgoSKED25519v01:
		return ssh.KeyAlgoSKED25519
	case ssh.CertAlgoSKECDSA256v01:
		return ssh.KeyAlgoSKECDSA256
	}
	return strings.TrimSuffix(alg, "-cert-v01@openssh.com")
}

// algorithms orders the host key algorithms as sshconnect2.c
// order_hostkeyalgs does: verbatim when a plain key of the first
// algorithm's type is known; else the algorithms of known key types, and
// every certificate algorithm when a @cert-authority line names the host,
// first. Otherwise a server could present a key type not yet known and
// force a prompt.
func (h *hostKeyChecker) algorithms() []string {
	if h.cfg.HostKeyAlgorithms != nil {
		return h.cfg.HostKeyAlgorithms // as ssh: a list given is not reordered
	}
	algs := defaultHostKeyAlgorithms()
	hk := loadHostKeys(h.lookupName(h.cfg.Port), h.files(), h.log)
	if len(algs) == 0 || hk.hasPlainType(algorithmKeyType(algs[0])) {
		return algs
	}
	var first, last []string
	for _, a := range algs {
		if strings.HasSuffix(a, "-cert-v01@openssh.com") && hk.hasCA() || hk.hasPlainType(algorithmKeyType(a)) {
			first = append(first, a)
		} else {
			last = append(last, a)
		}
	}
	return append(first, last...)
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
	case t == "ssh-dss": // x/crypto deprecated the name, not the keys in known_hosts
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
