package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A spool append that fails on a full disk (issue 16) cuts the file back
// to the records it held, keeps it (and only it) open, and the next append
// after space returns goes on in it: every acknowledged record is read
// back, none of the failed one. Real ENOSPC, on a 1 MiB tmpfs.
func TestSpoolAppendDiskFull(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mounting a tmpfs (needs root): %v", err)
		}
		t.Skipf("mounting a tmpfs (needs root; required under CI=true): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	sp := &spool{dir: filepath.Join(dir, "spool")}
	defer sp.closeAll()
	entries := func(i int) []entry {
		e, err := newEntry(rec("a.test", time.Now(), qid(i)))
		if err != nil {
			t.Fatal(err)
		}
		return []entry{e}
	}
	if err := sp.append(entries(0)); err != nil {
		t.Fatal(err)
	}
	path := sp.cur.path
	size := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	held := size()

	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for buf := make([]byte, 4096); ; {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close()
	// A record larger than what may be left in the last page.
	big := entries(1)
	big[0].data = `{"pad":"` + strings.Repeat("x", 64<<10) + `"}`
	for range 50 {
		if err := sp.append(big); !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("append on a full disk: %v, want ENOSPC", err)
		}
	}
	if sp.cur == nil || sp.cur.path != path || len(sp.done) != 0 || size() != held {
		t.Fatalf("after failed appends: current %v, %d files kept, size %d (held %d)", sp.cur, len(sp.done), size(), held)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := sp.append(entries(2)); err != nil {
		t.Fatalf("append after space returned: %v", err)
	}
	if err := sp.probe(); err != nil {
		t.Errorf("probe: %v", err)
	}
	if _, err := sp.cur.f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	es, bad, torn, err := readSpool(sp.cur.f)
	if err != nil || bad != 0 || torn || len(es) != 2 || es[0].rec.QueueID != qid(0) || es[1].rec.QueueID != qid(2) {
		t.Errorf("read back %d entries (bad %d, torn %v, %v)", len(es), bad, torn, err)
	}
	if files, _ := filepath.Glob(filepath.Join(sp.dir, "*")); len(files) != 1 {
		t.Errorf("files in the spool directory: %v", files)
	}
}
