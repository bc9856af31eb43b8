package store

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/authmilter/authmilter/pkg/report"
)

// entry is one record on its way to the database: its id, made once at
// record time, and the record's JSON.
type entry struct {
	id   string
	ts   int64 // Record.Time as Unix microseconds
	rec  report.Record
	data string // json.Marshal(rec)
}

// newID returns a record id: 32 lowercase hex digits, the first 12 the
// time in Unix milliseconds, the other 20 random (80 bits, so ids stay
// unique across the MX hosts sharing a database). Ids made close in time
// sort together: an insert adds to the end of the primary key's index, as
// the rows of one batch do to one page, instead of to a random page of an
// index that soon outgrows the cache (a read, and a page in the WAL, per
// row).
func newID() string {
	var b [16]byte
	ms := uint64(time.Now().UnixMilli())
	for i := 5; i >= 0; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
	fillRandom(b[6:])
	return hex.EncodeToString(b[:])
}

// randomHex returns n random bytes as hex.
func randomHex(n int) string {
	b := make([]byte, n)
	fillRandom(b)
	return hex.EncodeToString(b)
}

func fillRandom(b []byte) {
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("store: crypto/rand: %v", err)) // never fails on supported systems
	}
}

// encoder is a reusable JSON encoder and its buffer.
type encoder struct {
	buf bytes.Buffer
	enc *json.Encoder
}

var encoders = sync.Pool{New: func() any {
	e := &encoder{}
	e.enc = json.NewEncoder(&e.buf)
	return e
}}

// newEntry gives rec its id and encodes it, as json.Marshal does, into a
// pooled buffer: the one allocation is the string kept.
func newEntry(rec report.Record) (entry, error) {
	e := encoders.Get().(*encoder)
	defer encoders.Put(e)
	e.buf.Reset()
	if err := e.enc.Encode(rec); err != nil {
		return entry{}, fmt.Errorf("store: encode record: %w", err)
	}
	data := bytes.TrimSuffix(e.buf.Bytes(), []byte("\n"))
	return entry{id: newID(), ts: rec.Time.UnixMicro(), rec: rec, data: string(data)}, nil
}

// spoolLine is one line of a spool file.
type spoolLine struct {
	ID     string          `json:"id"`
	Record json.RawMessage `json:"record"`
}

// spool is the local fallback for records the database could not take in
// time: append-only files of JSON lines in one directory, fsynced before a
// waiter is answered. Each process appends to a file of its own, named
// spool-<random>.jsonl and held under an exclusive flock while open; a file
// nobody holds belongs to a process that is gone and is replayed by the
// next one that finds it.
type spool struct {
	dir string

	mu   sync.Mutex
	cur  *spoolFile // the file appended to now; nil until needed
	done []*spoolFile
}

// spoolFile is one spool file, open and locked by us.
type spoolFile struct {
	path string
	f    *os.File
}

func (sf *spoolFile) close() { sf.f.Close() }

// remove deletes a replayed file. The lock goes with the descriptor.
func (sf *spoolFile) remove() error {
	err := os.Remove(sf.path)
	sf.f.Close()
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("store: spool: %w", err)
	}
	return nil
}

// append writes entries as lines and fsyncs them. Safe for concurrent use.
//
// A write or fsync that fails (ENOSPC, EIO) loses this append's records —
// the caller counts and logs them — but nothing else: the file is cut back
// to what it held before, and an empty one is closed and removed, so a full
// disk costs no descriptor and leaves no file per failed append (issue 16:
// each failure left an empty file open until the descriptors ran out). The
// next append tries again, so spooling resumes by itself when space
// returns.
func (s *spool) append(es []entry) error {
	var b bytes.Buffer
	for _, e := range es {
		b.WriteString(`{"id":"`)
		b.WriteString(e.id)
		b.WriteString(`","record":`)
		b.WriteString(e.data)
		b.WriteString("}\n")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		sf, err := s.create()
		if err != nil {
			return err
		}
		s.cur = sf
	}
	var size int64
	fi, err := s.cur.f.Stat()
	if err == nil {
		size = fi.Size()
		if _, err = s.cur.f.Write(b.Bytes()); err != nil {
			err = fmt.Errorf("store: spool write: %w", err)
		} else if err = s.cur.f.Sync(); err != nil {
			err = fmt.Errorf("store: spool fsync: %w", err)
		}
	}
	if err != nil {
		s.cutBack(size)
	}
	return err
}

// cutBack undoes a failed append to the current file, which held size
// bytes before it. Called with mu held.
func (s *spool) cutBack(size int64) {
	sf := s.cur
	if size == 0 {
		// Nothing acknowledged in it: the file goes, with its descriptor.
		s.cur = nil
		sf.remove() //nolint:errcheck // best effort; an empty file left is replayed as nothing
		return
	}
	if sf.f.Truncate(size) == nil && sf.f.Sync() == nil {
		return // as it was: the next append goes on in it
	}
	// Its earlier records were acknowledged: keep it for the replay (a
	// torn last line is dropped there) and start a new file next time.
	s.done = append(s.done, sf)
	s.cur = nil
}

// probe reports whether a record-sized write and fsync succeed in the
// spool directory now (the disk has room again), leaving nothing behind.
func (s *spool) probe() error {
	if err := os.MkdirAll(s.dir, 0o750); err != nil {
		return err
	}
	f, err := os.CreateTemp(s.dir, "probe-*.tmp") // not a spool file name
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.Write(make([]byte, 4096)); err != nil {
		return err
	}
	return f.Sync()
}

func (s *spool) create() (*spoolFile, error) {
	if err := os.MkdirAll(s.dir, 0o750); err != nil {
		return nil, fmt.Errorf("store: spool: %w", err)
	}
	path := filepath.Join(s.dir, "spool-"+randomHex(8)+".jsonl")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("store: spool: %w", err)
	}
	if ok, err := tryFlock(f); err != nil || !ok {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("store: spool lock %s: %v", path, err)
	}
	// The new name must survive a crash too.
	if d, err := os.Open(s.dir); err == nil {
		d.Sync()
		d.Close()
	}
	return &spoolFile{path: path, f: f}, nil
}

// take hands over every file to replay: the current one (later appends go
// to a new file), files whose earlier replay failed, and files of processes
// that are gone.
func (s *spool) take() []*spoolFile {
	s.mu.Lock()
	out := s.done
	s.done = nil
	if s.cur != nil {
		out = append(out, s.cur)
		s.cur = nil
	}
	s.mu.Unlock()
	return append(out, s.orphans(out)...)
}

// giveBack keeps files whose replay failed for the next attempt.
func (s *spool) giveBack(fs []*spoolFile) {
	s.mu.Lock()
	s.done = append(s.done, fs...)
	s.mu.Unlock()
}

// pending reports whether any file waits for replay in this process.
func (s *spool) pending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur != nil || len(s.done) > 0
}

// orphans opens and locks the spool files no live process holds.
func (s *spool) orphans(have []*spoolFile) []*spoolFile {
	names, _ := filepath.Glob(filepath.Join(s.dir, "spool-*.jsonl"))
	var out []*spoolFile
next:
	for _, p := range names {
		for _, h := range have {
			if h.path == p {
				continue next
			}
		}
		s.mu.Lock()
		mine := s.cur != nil && s.cur.path == p
		s.mu.Unlock()
		if mine {
			continue
		}
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			continue
		}
		if ok, err := tryFlock(f); err != nil || !ok {
			f.Close() // a live process holds it
			continue
		}
		out = append(out, &spoolFile{path: p, f: f})
	}
	return out
}

// closeAll releases every file without removing it (shutdown): the next
// start replays them.
func (s *spool) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil {
		s.cur.close()
		s.cur = nil
	}
	for _, sf := range s.done {
		sf.close()
	}
	s.done = nil
}

// readSpool reads the entries of a spool file. A last line without its
// newline is the torn write of a crash: that record's waiter was never
// answered, so it is dropped (torn = true). A complete line that does not
// parse is skipped and counted in bad.
func readSpool(r io.Reader) (es []entry, bad int, torn bool, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, rerr := br.ReadBytes('\n')
		if rerr == io.EOF {
			if len(bytes.TrimSpace(line)) > 0 {
				torn = true
			}
			return es, bad, torn, nil
		}
		if rerr != nil {
			return es, bad, torn, fmt.Errorf("store: spool read: %w", rerr)
		}
		var l spoolLine
		if err := json.Unmarshal(line, &l); err != nil || len(l.ID) != 32 || strings.Trim(l.ID, "0123456789abcdef") != "" {
			bad++
			continue
		}
		var rec report.Record
		if err := json.Unmarshal(l.Record, &rec); err != nil {
			bad++
			continue
		}
		es = append(es, entry{id: l.ID, ts: rec.Time.UnixMicro(), rec: rec, data: string(l.Record)})
	}
}
