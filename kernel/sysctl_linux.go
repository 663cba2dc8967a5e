//go:build linux

package kernel

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// SetSysctl sets the kernel parameter name, as sysctl(8) spells it
// ("net.ipv4.ip_forward"), to value through /proc/sys. A name that contains
// "/" is taken as a path under /proc/sys as is, for the interface names that
// hold dots ("net/ipv4/conf/eth0.100/forwarding"). Revert writes the old value
// back, and only if SetSysctl changed it and nobody changed it since.
//
// Parameters under net. belong to the calling thread's network namespace.
func (u *undoLog) SetSysctl(name, value string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	path, err := sysctlPath(name)
	if err != nil {
		return err
	}
	old, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("sysctl %s: no such parameter (%s): %w", name, path, err)
	}
	if err != nil {
		return fmt.Errorf("sysctl %s: %w", name, err)
	}
	oldValue := string(bytes.TrimSpace(old))
	if oldValue == value {
		return nil
	}
	c := change{Op: opSysctl, Path: path, Value: value, Old: oldValue}
	return u.apply(c, func() error {
		err := writeSysctl(path, value)
		if errors.Is(err, fs.ErrPermission) {
			return fmt.Errorf("sysctl %s=%s: %w: run as root", name, value, err)
		}
		if err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", name, value, err)
		}
		return nil
	})
}

// revertSysctl writes Old back unless someone changed the value since: who
// changed it owns it now.
func (c change) revertSysctl(log *slog.Logger) error {
	now, err := os.ReadFile(c.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // its interface is gone
	}
	if err == nil && string(bytes.TrimSpace(now)) != c.Value {
		log.Info("sysctl changed by someone else since; not restored", "path", c.Path, "value", string(bytes.TrimSpace(now)))
		return nil
	}
	if err := writeSysctl(c.Path, c.Old); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("restore sysctl %s=%s: %w", c.Path, c.Old, err)
	}
	return nil
}

func sysctlPath(name string) (string, error) {
	rel := name
	if !strings.Contains(name, "/") {
		rel = strings.ReplaceAll(name, ".", "/")
	}
	if !filepath.IsLocal(rel) || rel == "" {
		return "", fmt.Errorf("sysctl %q: not a parameter name", name)
	}
	return filepath.Join("/proc/sys", rel), nil
}

// writeSysctl writes without O_CREATE or O_TRUNC: /proc/sys files cannot be
// created and take the whole value in one write.
func writeSysctl(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
