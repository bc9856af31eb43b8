//go:build linux || freebsd || openbsd || netbsd || darwin || dragonfly

package store

import (
	"syscall"
	"time"
)

// processCPU is the user + system CPU time this process has used so far
// (getrusage RUSAGE_SELF); ok is false where it cannot be read.
func processCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
