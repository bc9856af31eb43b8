package incoming

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/authmilter/authmilter/pkg/report"
)

// Import reads path: "-" for stdin, a directory (a Maildir when it has
// cur/ or new/, whose mails are read; else every file below it), or one
// file (an mbox, a report file or a mail, told by content). An input that
// cannot be read is counted as Invalid and logged, and the import goes on;
// the error returned is the first store failure or unreadable path.
func (in *Ingester) Import(ctx context.Context, path string, stdin io.Reader) (Result, error) {
	if path == "-" {
		b, err := readLimited(stdin, in.maxInput())
		if err != nil {
			return Result{}, fmt.Errorf("incoming: stdin: %w", err)
		}
		return in.keepGoing(in.Input(ctx, b, "stdin"))
	}
	fi, err := os.Stat(path)
	if err != nil {
		return Result{}, fmt.Errorf("incoming: %w", err)
	}
	if !fi.IsDir() {
		return in.file(ctx, path)
	}
	var res Result
	dirs := []string{path}
	if isMaildir(path) {
		dirs = []string{filepath.Join(path, "new"), filepath.Join(path, "cur")}
	}
	for _, d := range dirs {
		err := filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) && p == d {
					return nil // a Maildir without new/ or cur/
				}
				return err
			}
			if e.IsDir() || !e.Type().IsRegular() {
				return nil
			}
			r, err := in.file(ctx, p)
			res.Add(r)
			return err
		})
		if err != nil {
			return res, fmt.Errorf("incoming: %w", err)
		}
	}
	return res, nil
}

func isMaildir(dir string) bool {
	for _, s := range []string{"cur", "new"} {
		if fi, err := os.Stat(filepath.Join(dir, s)); err == nil && fi.IsDir() {
			return true
		}
	}
	return false
}

func (in *Ingester) maxInput() int64 {
	if in.Limits != nil && in.Limits.MaxInput > 0 {
		return in.Limits.MaxInput
	}
	return report.DefaultMaxInput
}

// file reads one file; an mbox may be larger than one mail's limit, so it
// is streamed, the rest read whole (bounded).
func (in *Ingester) file(ctx context.Context, path string) (Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return Result{}, fmt.Errorf("incoming: %w", err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	if head, _ := br.Peek(5); string(head) == "From " {
		return in.Mbox(ctx, br, path)
	}
	b, err := readLimited(br, in.maxInput())
	if err != nil {
		return in.keepGoing(in.invalid(path, err))
	}
	return in.keepGoing(in.Input(ctx, b, path))
}

// keepGoing turns a reading error into a counted Invalid (the import goes
// on); a store error stays an error.
func (in *Ingester) keepGoing(r Result, err error) (Result, error) {
	if err != nil && r.Invalid > 0 {
		return r, nil
	}
	return r, err
}

func readLimited(r io.Reader, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: over %d bytes", report.ErrTooLarge, max)
	}
	return b, nil
}

// Mbox reads every mail of an mbox (splitMbox); a mail over the input
// limit is counted Invalid and skipped.
func (in *Ingester) Mbox(ctx context.Context, r io.Reader, where string) (Result, error) {
	max := in.maxInput()
	var res Result
	n := 0
	err := splitMbox(r, max, func(msg []byte, tooBig bool) error {
		n++
		w := fmt.Sprintf("%s#%d", where, n)
		if tooBig {
			res.Add(in.invalidNoErr(w, fmt.Errorf("%w: mail over %d bytes", report.ErrTooLarge, max)))
			return nil
		}
		got, err := in.keepGoing(in.Mail(ctx, bytes.NewReader(msg), w))
		res.Add(got)
		return err
	})
	if err != nil {
		return res, fmt.Errorf("incoming: %s: %w", where, err)
	}
	return res, nil
}

// splitMbox calls fn with each mail of an mbox: mails begin at a "From "
// line at the start of the input or after an empty line (that line is not
// part of the mail; the empty line before it is kept as the end of the
// previous mail); ">From " lines lose one ">" (mboxrd quoting, which also
// reads mboxo). A mail over max bytes is not kept: fn gets tooBig and no
// bytes. An error from fn stops the split.
func splitMbox(r io.Reader, max int64, fn func(msg []byte, tooBig bool) error) error {
	br := bufio.NewReader(r)
	var msg bytes.Buffer
	open, tooBig, prevEmpty := false, false, true
	flush := func() error {
		if !open {
			return nil
		}
		return fn(msg.Bytes(), tooBig)
	}
	var line []byte
	for {
		// One whole line (a long one is joined from the reader's pieces, up
		// to max: past that the mail is too big anyway).
		line = line[:0]
		piece, err := br.ReadSlice('\n')
		line = append(line, piece...)
		for err == bufio.ErrBufferFull {
			piece, err = br.ReadSlice('\n')
			if int64(len(line)) <= max {
				line = append(line, piece...)
			}
		}
		if len(line) > 0 {
			if prevEmpty && bytes.HasPrefix(line, []byte("From ")) {
				if ferr := flush(); ferr != nil {
					return ferr
				}
				open, tooBig = true, false
				msg.Reset()
			} else if open && !tooBig {
				if q := bytes.TrimLeft(line, ">"); len(q) < len(line) && bytes.HasPrefix(q, []byte("From ")) {
					msg.Write(line[1:])
				} else {
					msg.Write(line)
				}
				if int64(msg.Len()) > max {
					tooBig = true
					msg.Reset()
				}
			}
			prevEmpty = len(bytes.TrimRight(line, "\r\n")) == 0
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	return flush()
}

func (in *Ingester) invalidNoErr(where string, err error) Result {
	r, _ := in.invalid(where, err)
	return r
}
