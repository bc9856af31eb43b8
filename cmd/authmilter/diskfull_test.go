package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/store"
	"github.com/authmilter/authmilter/pkg/report"
)

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// A full disk under the store (issue 16), on a real 2 MiB tmpfs holding
// the SQLite database and the spool: every record that cannot be kept is
// counted (Stats.Lost) and /readyz's store check fails while it happens;
// failed spool appends leave no descriptor and no file behind; once space
// returns the store keeps records again and /readyz recovers by itself,
// without a message and without a restart.
func TestDiskFull(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=2m"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mounting a tmpfs (needs root): %v", err)
		}
		t.Skipf("mounting a tmpfs (needs root; required under CI=true): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	spoolDir := filepath.Join(dir, "spool")
	st, err := store.Open(context.Background(), store.Options{SQLitePath: filepath.Join(dir, "records.db"), SpoolDir: spoolDir,
		WriteTimeout: 200 * time.Millisecond, RetryInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var listening atomic.Bool
	listening.Store(true)
	storeCheck := func() error {
		for _, c := range readiness(&listening, st, spoolDir) {
			if c.Name == "store" {
				_, err := c.Fn()
				return err
			}
		}
		t.Fatal("no store check")
		return nil
	}
	ctx := context.Background()
	put := func(i int) error {
		return st.Put(ctx, report.Record{Time: time.Now().UTC(), QueueID: "Q" + string(rune('A'+i%26)) + strings.Repeat("x", i%7),
			HeaderFrom: "a.test", Policy: report.PolicyPublished{Domain: "a.test"}, SourceIP: "192.0.2.1"})
	}
	for i := range 3 {
		if err := put(i); err != nil {
			t.Fatal(err)
		}
	}
	if err := storeCheck(); err != nil {
		t.Fatalf("readyz before: %v", err)
	}

	// Fill the disk.
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for buf := make([]byte, 64<<10); ; {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	f.Close()

	fds := openFDs(t)
	const n = 200
	lost := 0
	for i := range n {
		if err := put(i); errors.Is(err, store.ErrLost) {
			lost++
		} else if err != nil {
			t.Fatalf("put: %v, want nil or ErrLost", err)
		}
	}
	if lost == 0 || st.Stats().Lost != int64(lost) {
		t.Errorf("%d Puts reported lost, store counts %d", lost, st.Stats().Lost)
	}
	if err := storeCheck(); err == nil {
		t.Error("readyz store check passes while records are lost")
	}
	if d := openFDs(t) - fds; d > 3 {
		t.Errorf("%d more descriptors after %d failed appends", d, lost)
	}
	if files, _ := filepath.Glob(filepath.Join(spoolDir, "spool-*.jsonl")); len(files) > 1 {
		t.Errorf("%d spool files left by failed appends", len(files))
	}

	// Space returns: readyz recovers by itself, records are kept again.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for storeCheck() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("readyz still failing after space returned: %v", storeCheck())
		}
		time.Sleep(20 * time.Millisecond)
	}
	before := st.Stats()
	for i := range 20 {
		if err := put(i); err != nil {
			t.Fatalf("put after space returned: %v", err)
		}
	}
	if after := st.Stats(); after.Lost != before.Lost {
		t.Errorf("lost %d more after space returned", after.Lost-before.Lost)
	}
	// Kept: the 3 before, the acknowledged ones while full, the 20 after.
	// Records a Put acknowledged into the spool (the database still
	// counted as down) reach the table when the replayer has run, in the
	// background: wait for it rather than count at once.
	want := 3 + (n - lost) + 20
	var rows []store.Row
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if rows, err = st.Rows(ctx, store.Query{}); err != nil {
			t.Fatal(err)
		}
		if len(rows) >= want || time.Now().After(deadline) {
			break
		}
	}
	if len(rows) < want {
		t.Errorf("%d rows, want at least %d (spool %+v)", len(rows), want, st.Stats())
	}
}
