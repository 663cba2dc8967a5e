package sshchantest

// Policy is how a Peer counts and returns its receive window.
type Policy struct {
	Name string
	// Version is the SSH version string the peer announces; sshvpn takes
	// one that starts with "SSH-2.0-OpenSSH" for OpenSSH.
	Version string
	// Charge is what a datagram of len bytes costs the window beyond len.
	// The peer requires len+max(Charge, 0) bytes of window for it, as
	// OpenSSH and asyncssh check before they charge.
	Charge int
	// ReturnBelow, when set, returns window only once less than
	// 1/ReturnBelow of it is left: 2 is asyncssh's half. Zero returns it
	// also once 3 maximum packets (96 KiB) are consumed, as OpenSSH's
	// channel_check_window and x/crypto do.
	ReturnBelow int
}

// The receivers sshvpn's sender must carry on toward. None announces
// itself as OpenSSH except LateOpenSSH, so sshvpn must learn each one's
// charge from its adjusts.
var (
	// HalfWindow counts len and returns window at half, as asyncssh does
	// on every channel: a sender that stops at less than half the window
	// waits for it forever.
	HalfWindow = Policy{Name: "half-window", Version: "SSH-2.0-sshchantest_half", ReturnBelow: 2}
	// LessFour is asyncssh's tunnel: len-4 per datagram, returned at
	// half. A sender that counts len loses 4 bytes per datagram for good.
	LessFour = Policy{Name: "len-4", Version: "SSH-2.0-sshchantest_asyncssh", Charge: -4, ReturnBelow: 2}
	// PlusFour is OpenSSH's count, len+4, returned early, under a version
	// string that does not say OpenSSH.
	PlusFour = Policy{Name: "len+4", Version: "SSH-2.0-sshchantest_openssh", Charge: 4}
	// LateOpenSSH announces OpenSSH, which sshvpn knows to return window
	// early and so holds to an in-flight cap, but returns it at half.
	LateOpenSSH = Policy{Name: "late-openssh", Version: "SSH-2.0-OpenSSH_9.9 sshchantest", Charge: 4, ReturnBelow: 2}
)

// Receivers are the policies every sender must serve.
var Receivers = []Policy{HalfWindow, LessFour, PlusFour, LateOpenSSH}
