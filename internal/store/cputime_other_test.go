//go:build !(linux || freebsd || openbsd || netbsd || darwin || dragonfly)

package store

import "time"

func processCPU() (time.Duration, bool) { return 0, false }
