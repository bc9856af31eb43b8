//go:build linux || freebsd || openbsd || netbsd || darwin || dragonfly

package store

import (
	"errors"
	"os"
	"syscall"
)

// tryFlock takes an exclusive flock(2) on f without waiting. It is held
// until f is closed, and released by the kernel when the process dies.
func tryFlock(f *os.File) (bool, error) {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	return err == nil, err
}
