//go:build !linux

package tun

import (
	"errors"
	"fmt"

	"github.com/sshvpn/sshvpn/relay"
)

// Tun is a kernel tun or tap device. Only Linux has them here; elsewhere
// Open fails with errors.ErrUnsupported.
type Tun struct{}

var _ relay.Device = (*Tun)(nil)

// Open fails with errors.ErrUnsupported: use --backend netstack.
func Open(cfg Config) (*Tun, error) {
	return nil, fmt.Errorf("open tun: %w on this system: use --backend netstack", errors.ErrUnsupported)
}

func (t *Tun) Name() string   { return "" }
func (t *Tun) Created() bool  { return false }
func (t *Tun) BatchSize() int { return BatchSize }
func (t *Tun) MTU() int       { return 0 }
func (t *Tun) LinkMTU() int   { return 0 }
func (t *Tun) GSO() bool      { return false }
func (t *Tun) Close() error   { return errors.ErrUnsupported }
func (t *Tun) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return 0, errors.ErrUnsupported
}
func (t *Tun) Write(bufs [][]byte, offset int) (int, error) { return 0, errors.ErrUnsupported }

// CheckAccess fails: there are no tun/tap devices here.
func CheckAccess() error {
	return &AccessError{Op: "open tun", Err: errors.ErrUnsupported, Cure: "tun/tap devices need Linux"}
}

// RefreshMTU fails: there are no tun/tap devices here.
func (t *Tun) RefreshMTU() error { return errors.ErrUnsupported }
