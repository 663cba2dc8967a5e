package kernel

// causeError is an error whose message is already complete advice but which
// still wraps its cause for errors.Is, such as
// "add 198.18.0.1/24 to tun0: address in use (already on tun0)" over EEXIST.
type causeError struct {
	msg   string
	cause error
}

func (e *causeError) Error() string { return e.msg }
func (e *causeError) Unwrap() error { return e.cause }
