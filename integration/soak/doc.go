// Package soak holds the soak run of issue #10: soak.sh drives the real
// authmilter serve binary with the SQLite store on, at a share of its
// measured maximum throughput, with connections dropped at random, and
// soakcheck checks that every acknowledged message has its record and
// that RSS, goroutines and open fds stayed flat. The package's test runs
// the short mode of the same script.
package soak
