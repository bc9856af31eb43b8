// Package acked is the acknowledged-messages file of the load tools. Its
// one job: write and read that file. milterload writes one line per
// message whose end-of-message reply arrived, "queue-id<TAB>file<TAB>
// verdict"; soakcheck reads it to know which records the store must hold.
package acked

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// Entry is one acknowledged message.
type Entry struct {
	QueueID string // the queue id the message was sent with
	File    string // its corpus file
	Verdict string // what the milter answered: accept, reject, ...
}

// Writer writes entries, one line each; it is safe for concurrent use.
type Writer struct {
	mu sync.Mutex
	w  io.Writer
}

// NewWriter writes entries to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write writes one entry. A field holding a tab or a line end is an
// error: the line could not be read back.
func (w *Writer) Write(e Entry) error {
	for _, f := range []string{e.QueueID, e.File, e.Verdict} {
		if strings.ContainsAny(f, "\t\r\n") {
			return fmt.Errorf("acked entry %q: a field holds a tab or a line end", f)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	_, err := fmt.Fprintf(w.w, "%s\t%s\t%s\n", e.QueueID, e.File, e.Verdict)
	return err
}

// File is a Writer appending to a file through a buffer.
type File struct {
	*Writer
	f  *os.File
	bw *bufio.Writer
}

// Append opens path for appending (creating it) and writes entries to it;
// Close flushes them.
func Append(path string) (*File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("acked file: %w", err)
	}
	bw := bufio.NewWriterSize(f, 64<<10)
	return &File{Writer: NewWriter(bw), f: f, bw: bw}, nil
}

// Close flushes the buffer and closes the file.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return errors.Join(f.bw.Flush(), f.f.Close())
}

// Read reads every entry of r; name is the file's name in errors. A line
// without exactly three fields, or a queue id seen twice, is an error.
func Read(r io.Reader, name string) ([]Entry, error) {
	var es []Entry
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) != 3 {
			return nil, fmt.Errorf("%s line %d: want queue-id, file, verdict", name, n)
		}
		if seen[cols[0]] {
			return nil, fmt.Errorf("%s line %d: queue id %s acknowledged twice", name, n, cols[0])
		}
		seen[cols[0]] = true
		es = append(es, Entry{QueueID: cols[0], File: cols[1], Verdict: cols[2]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return es, nil
}

// ReadFile reads the entries of the file at path.
func ReadFile(path string) ([]Entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("acked file: %w", err)
	}
	defer f.Close()
	return Read(f, path)
}
