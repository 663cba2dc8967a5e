package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// User certificates, judged as sshd judges one offered against an
// authorized_keys file (auth2-pubkeyfile.c auth_check_authkey_line): the
// certificate must be signed, with an algorithm sshd accepts, by a key on
// a cert-authority line; that line's own conditions (from=, expiry-time=)
// must hold; the certificate's critical options must all be known and its
// source-address must hold; the line's principals= (or, without it, the
// login's user name) must be among the certificate's principals; and now
// must be inside its validity. Like sshd, a line that fails any of these
// leaves the next line holding the same CA to try.

// caSignatureAlgorithms are the signature algorithms sshd accepts on a
// certificate by default (CASignatureAlgorithms): not ssh-rsa, whose SHA-1
// signatures can be forged for a chosen prefix.
var caSignatureAlgorithms = []string{
	ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
	ssh.KeyAlgoSKED25519, ssh.KeyAlgoSKECDSA256, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256,
}

// The critical options and extensions sshd knows (auth-options.c
// cert_option_list). An unknown critical option refuses the certificate;
// an unknown extension is ignored.
const (
	optForceCommand         = "force-command"
	optSourceAddress        = "source-address"
	optVerifyRequired       = "verify-required"
	extPermitPortForwarding = "permit-port-forwarding"
)

// certOptions are the options a certificate carries that sshvpn acts on.
type certOptions struct {
	forceCommand         *string
	sourceAddress        []netip.Prefix // nil without source-address
	permitPortForwarding bool
}

// lookupCert finds the cert-authority line that lets cert log in as user
// from remote at now.
func (a *AuthorizedKeys) lookupCert(keys []authorizedKey, cert *ssh.Certificate, user string, remote net.Addr, now time.Time) (*KeyOptions, error) {
	name := describeCert(cert)
	if err := checkCertSignature(cert); err != nil {
		return nil, fmt.Errorf("certificate %s refused: %w", name, err)
	}
	want := cert.SignatureKey.Marshal()
	why := fmt.Errorf("certificate %s refused: its CA is on no cert-authority line of %s", name, a.path)
	for i := range keys {
		k := &keys[i]
		if !k.certAuthority || !bytes.Equal(k.key.Marshal(), want) {
			continue
		}
		o, err := k.authorizeCert(cert, user, remote, now)
		if err != nil {
			why = fmt.Errorf("certificate %s refused by %s: %w", name, k.opts.Source, err)
			continue
		}
		o.Certificate = name
		return o, nil
	}
	return nil, why
}

// describeCert names a certificate as sshd's log does.
func describeCert(cert *ssh.Certificate) string {
	return fmt.Sprintf("ID %q (serial %d) signed by CA %s %s", truncate(cert.KeyId, 64), cert.Serial,
		cert.SignatureKey.Type(), ssh.FingerprintSHA256(cert.SignatureKey))
}

// checkCertSignature checks what sshd checks of a certificate before it
// reads a line: that it is a user certificate, signed with an algorithm
// sshd accepts, and that the signature holds.
func checkCertSignature(cert *ssh.Certificate) error {
	if cert.CertType != ssh.UserCert {
		return errors.New("not a user certificate")
	}
	if cert.Signature == nil || !slices.Contains(caSignatureAlgorithms, cert.Signature.Format) {
		format := "none"
		if cert.Signature != nil {
			format = cert.Signature.Format
		}
		return fmt.Errorf("signature algorithm %s is not one sshd accepts (%s)",
			truncate(format, 64), strings.Join(caSignatureAlgorithms, ","))
	}
	signed := *cert
	signed.Signature = nil
	b := signed.Marshal()
	// What the CA signed is the certificate up to its signature: the
	// marshalled form without the signature's (empty) length word.
	if err := cert.SignatureKey.Verify(b[:len(b)-4], cert.Signature); err != nil {
		return fmt.Errorf("the CA's signature does not verify: %w", err)
	}
	return nil
}

// authorizeCert checks cert against one cert-authority line, in sshd's
// order, and returns the options the login gets: the line's and the
// certificate's together.
func (k *authorizedKey) authorizeCert(cert *ssh.Certificate, user string, remote net.Addr, now time.Time) (*KeyOptions, error) {
	if err := k.opts.check(remote, now); err != nil {
		return nil, fmt.Errorf("the CA %w", err)
	}
	co, err := parseCertOptions(cert)
	if err != nil {
		return nil, err
	}
	if co.sourceAddress != nil && !matchSourceAddress(co.sourceAddress, remote) {
		return nil, fmt.Errorf("not allowed from %s (source-address %q)", remote, truncate(cert.CriticalOptions[optSourceAddress], 128))
	}
	o, err := k.merge(co)
	if err != nil {
		return nil, err
	}
	if k.principals != nil && !matchPrincipals(*k.principals, cert.ValidPrincipals) {
		return nil, fmt.Errorf("none of its principals %q is in principals=%q", cert.ValidPrincipals, *k.principals)
	}
	// With principals= on the line, the user name is not compared.
	name := &user
	if k.principals != nil {
		name = nil
	}
	if err := checkAuthority(cert, now, name); err != nil {
		return nil, err
	}
	return o, nil
}

// checkAuthority is sshd's last check (sshkey.c
// sshkey_cert_check_authority): now inside the validity, compared in
// unsigned seconds (valid from ValidAfter, expired at ValidBefore), then
// the user, when given, among the principals. A certificate without
// principals matches no user, as from OpenSSH 10.3: sshd 9.2 and 10.0 took
// it as anyone's through authorized_keys, so that a CA's slip (a
// certificate signed without -n) let its holder in as every user who
// trusts the CA.
func checkAuthority(cert *ssh.Certificate, now time.Time, user *string) error {
	t := uint64(max(now.Unix(), 0))
	switch {
	case t < cert.ValidAfter:
		return fmt.Errorf("not yet valid: valid from %s", certTime(cert.ValidAfter))
	case t >= cert.ValidBefore:
		return fmt.Errorf("expired at %s", certTime(cert.ValidBefore))
	case user != nil && len(cert.ValidPrincipals) == 0:
		return errors.New("it names no principals, so it is no user's (OpenSSH 10.3's rule)")
	case user != nil && !slices.Contains(cert.ValidPrincipals, *user):
		return fmt.Errorf("user %q is not among its principals %q", truncate(*user, 64), cert.ValidPrincipals)
	}
	return nil
}

func certTime(t uint64) string {
	if t > 1<<62 {
		return "forever"
	}
	return time.Unix(int64(t), 0).UTC().Format(time.RFC3339)
}

// parseCertOptions reads the certificate's critical options and
// extensions; an unknown critical option, or one sshvpn cannot honour,
// refuses the certificate.
func parseCertOptions(cert *ssh.Certificate) (certOptions, error) {
	var co certOptions
	for name, v := range cert.CriticalOptions {
		switch name {
		case optForceCommand:
			co.forceCommand = &v
		case optSourceAddress:
			p, err := parseSourceAddress(v)
			if err != nil {
				return co, fmt.Errorf("critical option source-address=%q: %w", truncate(v, 128), err)
			}
			co.sourceAddress = p
		case optVerifyRequired:
			// As the authorized_keys option: taking the certificate
			// would ignore the requirement.
			return co, errors.New("critical option verify-required (FIDO user verification) is not supported")
		default:
			return co, fmt.Errorf("unknown critical option %q", truncate(name, 64))
		}
	}
	_, co.permitPortForwarding = cert.Extensions[extPermitPortForwarding]
	return co, nil
}

// merge joins the line's options and the certificate's as sshd does
// (auth-options.c sshauthopt_merge): forwarding needs both to allow it,
// and the rest (tunnel=, permitopen=, environment=, restrict) comes from
// the line, since a certificate carries none of it. Two forced commands
// must be the same.
func (k *authorizedKey) merge(co certOptions) (*KeyOptions, error) {
	o := k.opts
	o.NoPortForwarding = o.NoPortForwarding || !co.permitPortForwarding
	if co.forceCommand != nil {
		if k.command != nil && *k.command != *co.forceCommand {
			return nil, fmt.Errorf("its force-command %q differs from the line's command=%q",
				truncate(*co.forceCommand, 64), truncate(*k.command, 64))
		}
		o.ForceCommand = *co.forceCommand
	}
	return &o, nil
}

// matchPrincipals reports whether one of a certificate's principals is in
// a principals= list, compared as sshd compares them (match.c match_list):
// exactly, no wildcards; either list ends at its first empty entry, and
// only the first 40 entries of principals= count. A principal holding
// commas counts as the list it spells.
func matchPrincipals(option string, principals []string) bool {
	allowed := commaList(option, 40)
	for _, p := range principals {
		for _, name := range commaList(p, -1) {
			if slices.Contains(allowed, name) {
				return true
			}
		}
	}
	return false
}

// commaList splits s at commas up to its first empty entry, keeping at
// most n entries (all when n < 0).
func commaList(s string, n int) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e == "" || len(out) == n {
			break
		}
		out = append(out, e)
	}
	return out
}

// parseSourceAddress reads a source-address list as sshd does
// (addrmatch.c addr_match_cidr_list): addresses and CIDR networks,
// comma-separated, no host bits set beyond the prefix; any bad entry makes
// the whole list bad, and sshd then refuses the certificate.
func parseSourceAddress(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, e := range strings.Split(list, ",") {
		p, err := parseCIDR(e)
		if err != nil {
			return nil, fmt.Errorf("entry %q: %w", truncate(e, 64), err)
		}
		out = append(out, p)
	}
	return out, nil
}

// maxCIDREntry is sshd's limit on one entry: the longest IPv6 address and
// a prefix length.
const maxCIDREntry = 46 + 3

func parseCIDR(e string) (netip.Prefix, error) {
	switch {
	case e == "":
		return netip.Prefix{}, errors.New("empty")
	case len(e) > maxCIDREntry:
		return netip.Prefix{}, errors.New("too long")
	case strings.Trim(e, "0123456789abcdefABCDEF.:/") != "":
		return netip.Prefix{}, errors.New("not an address or network")
	}
	if !strings.Contains(e, "/") {
		a, err := netip.ParseAddr(e)
		if err != nil {
			return netip.Prefix{}, err
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(e)
	if err != nil {
		return netip.Prefix{}, err
	}
	if p != p.Masked() {
		return netip.Prefix{}, errors.New("host bits set beyond the prefix")
	}
	return p, nil
}

// matchSourceAddress reports whether the client's address is in one of
// the networks.
func matchSourceAddress(nets []netip.Prefix, remote net.Addr) bool {
	ap, err := netip.ParseAddrPort(remote.String())
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, p := range nets {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
