// Package dkimverify verifies the DKIM signatures (RFC 6376) of one inbound
// message while its body streams through the milter, and returns one plain
// Result per signature for the Authentication-Results header and for DMARC.
//
// The cryptography and canonicalization are go-msgauth's (dkim.VerifyWithOptions,
// fed through an io.Pipe); this package adds what a receiving MTA needs
// around it: the message's context for key lookups, RFC 8301 policy (no
// rsa-sha1, a configurable minimum RSA key size), x=/t= checks against a
// configurable clock with drift, a cap on verified signatures that still
// reports the others, and statuses named as in RFC 8601 §2.7.1.
package dkimverify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

// Status is a DKIM result as named by RFC 8601 §2.7.1.
type Status string

const (
	StatusPass      Status = "pass"      // signature verified
	StatusFail      Status = "fail"      // body hash or signature did not verify
	StatusNeutral   Status = "neutral"   // signature could not be processed for other reasons
	StatusPolicy    Status = "policy"    // signature not acceptable here (RFC 8301, local limits)
	StatusTempError Status = "temperror" // key lookup failed temporarily; may pass later
	StatusPermError Status = "permerror" // no key, revoked key, malformed key or signature, expired
	StatusNone      Status = "none"      // message not signed (never in a Result; for callers)
)

// Errors found in Result.Err, for callers that want more than the Status.
var (
	ErrTooManySignatures = errors.New("dkimverify: not verified: too many signatures")
	ErrSHA1              = errors.New("dkimverify: rsa-sha1 not accepted")
	ErrKeyTooSmall       = errors.New("dkimverify: RSA key too small")
	ErrExpired           = errors.New("dkimverify: signature expired")
	ErrFutureTimestamp   = errors.New("dkimverify: signature timestamp in the future")
	ErrBadTimestamps     = errors.New("dkimverify: malformed t= or x=")
	ErrAborted           = errors.New("dkimverify: verification aborted")
	ErrInternal          = errors.New("dkimverify: verification failed")
)

// Result is the outcome for one DKIM-Signature field.
type Result struct {
	Status     Status
	Domain     string // d=, lowercased
	Identifier string // i= as in the signature; "" if absent
	Selector   string // s=
	Algorithm  string // a=, lowercased, e.g. "rsa-sha256", "ed25519-sha256"
	BPrefix    string // first 8+ characters of b= (RFC 6008 header.b), unique within the message
	KeyBits    int    // RSA key size; 0 if unknown or not RSA
	Reason     string // short human reason for anything but pass, e.g. "body hash mismatch"
	Err        error  // underlying error; nil on pass
}

// Options tune verification. A nil *Options, or a zero field, means the default.
type Options struct {
	// MinRSABits is the smallest RSA key accepted (default 1024; RFC 8301
	// §3.2 forbids less, so smaller values act as 1024).
	MinRSABits int
	// MaxSignatures is how many signatures are verified per message
	// (default 5). The rest are reported with StatusPolicy.
	MaxSignatures int
	// ClockDrift is the tolerance for x= and t= (default 300s; negative
	// means none).
	ClockDrift time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (o *Options) withDefaults() Options {
	var d Options
	if o != nil {
		d = *o
	}
	if d.MinRSABits < 1024 {
		d.MinRSABits = 1024
	}
	if d.MaxSignatures <= 0 {
		d.MaxSignatures = 5
	}
	switch {
	case d.ClockDrift == 0:
		d.ClockDrift = 300 * time.Second
	case d.ClockDrift < 0:
		d.ClockDrift = 0
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	return d
}

// TXTResolver is the DNS the verifier needs. Errors must be *net.DNSError
// (IsNotFound for NXDOMAIN/NODATA, IsTemporary or IsTimeout otherwise).
type TXTResolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// Verifier verifies one message. It is fed by one goroutine (Write, then
// Results or Abort); it is not for concurrent Writes.
type Verifier struct {
	opts   Options
	sigs   []sigTags
	keys   *keyLookups
	pw     *io.PipeWriter
	cancel context.CancelFunc
	done   chan struct{}

	// Set by the verification goroutine before done is closed.
	verifs []*dkim.Verification
	err    error

	endOnce    sync.Once
	resultOnce sync.Once
	results    []Result
}

// Start begins verification of a message whose complete header block (each
// field "Name:value\r\n" byte-exact, see AppendField, then the empty line
// "\r\n") is header. The header is copied. If it has no DKIM-Signature field,
// no goroutine is started and Results returns nil (the caller reports
// dkim=none). Otherwise key lookups start at once, through r, bound to ctx,
// and the caller must end with Results or Abort, or the goroutine leaks.
//
// Write blocks while go-msgauth waits for a key (it looks keys up before
// hashing the body): at most the resolver's timeout × attempts, well within
// Postfix's 300 s milter_content_timeout.
func Start(ctx context.Context, r TXTResolver, header []byte, o *Options) *Verifier {
	v := &Verifier{opts: o.withDefaults()}
	for _, sv := range signatureValues(header) {
		v.sigs = append(v.sigs, parseSignature(sv))
	}
	if len(v.sigs) == 0 {
		return v
	}

	hdr := make([]byte, 0, len(header)+4)
	hdr = append(hdr, header...)
	switch {
	case bytes.HasSuffix(hdr, []byte("\r\n\r\n")) || bytes.Equal(hdr, []byte("\r\n")):
	case bytes.HasSuffix(hdr, []byte("\r\n")):
		hdr = append(hdr, '\r', '\n')
	default:
		hdr = append(hdr, "\r\n\r\n"...)
	}

	ctx, v.cancel = context.WithCancel(ctx)
	v.keys = &keyLookups{ctx: ctx, r: r, answers: make(map[string]keyAnswer)}
	v.done = make(chan struct{})
	pr, pw := io.Pipe()
	v.pw = pw
	go v.run(&msgReader{hdr: hdr, pr: pr}, pr)
	return v
}

// msgReader is the header block, then the body from the pipe. go-msgauth
// reads the header through a bufio.Reader and then io.Copies the body,
// which reaches WriteTo: io.MultiReader's allocated a 32 KiB buffer per
// message, ours comes from a pool.
type msgReader struct {
	hdr []byte
	pr  *io.PipeReader
}

func (m *msgReader) Read(p []byte) (int, error) {
	if len(m.hdr) > 0 {
		n := copy(p, m.hdr)
		m.hdr = m.hdr[n:]
		return n, nil
	}
	return m.pr.Read(p)
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (m *msgReader) WriteTo(w io.Writer) (int64, error) {
	var n int64
	if len(m.hdr) > 0 {
		k, err := w.Write(m.hdr)
		n += int64(k)
		m.hdr = m.hdr[k:]
		if err != nil {
			return n, err
		}
	}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	for {
		k, rerr := m.pr.Read(buf)
		if k > 0 {
			wk, werr := w.Write(buf[:k])
			n += int64(wk)
			if werr != nil {
				return n, werr
			}
			if wk != k {
				return n, io.ErrShortWrite
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

func (v *Verifier) run(msg io.Reader, pr *io.PipeReader) {
	defer func() {
		if p := recover(); p != nil {
			v.verifs, v.err = nil, fmt.Errorf("%w: panic: %v", ErrInternal, p)
		}
		// Verification may end before the body does (a permerror found
		// before hashing): closing the reader makes later Writes return at
		// once instead of blocking.
		pr.CloseWithError(errDone)
		close(v.done)
	}()
	v.verifs, v.err = dkim.VerifyWithOptions(msg, &dkim.VerifyOptions{
		LookupTXT:        v.keys.lookup,
		MaxVerifications: v.opts.MaxSignatures,
	})
}

var errDone = errors.New("dkimverify: verification finished")

// Write passes a chunk of the body (CRLF line ends, as received). It blocks
// until the verifier has consumed the chunk, so memory stays bounded; it
// never fails: after the verification has ended or failed it discards.
func (v *Verifier) Write(body []byte) (int, error) {
	if v.pw != nil {
		_, _ = v.pw.Write(body) // an error only means nobody reads any more
	}
	return len(body), nil
}

// Results ends the body, waits for the verification and returns one Result
// per DKIM-Signature field, in header order; nil if there was none.
func (v *Verifier) Results() []Result {
	if v.pw == nil {
		return nil
	}
	v.endOnce.Do(func() { _ = v.pw.Close() })
	<-v.done
	v.cancel()
	v.resultOnce.Do(v.buildResults)
	out := make([]Result, len(v.results))
	copy(out, v.results)
	return out
}

// Abort releases the verification of a message that will not be finished:
// key lookups are cancelled and the body reader sees an error, so the
// goroutine ends soon without Results being called. Abort does not wait.
func (v *Verifier) Abort() {
	if v.pw == nil {
		return
	}
	v.cancel()
	// End the body normally, not with an error: go-msgauth v0.7.0's
	// parallelVerify returns on a read error without closing its
	// per-signature pipes, which leaves one goroutine per signature blocked
	// forever (seen in the soak run with dropped connections). With EOF it
	// finishes quickly (the key lookups are cancelled) and every goroutine
	// ends; the results are thrown away.
	v.endOnce.Do(func() { _ = v.pw.Close() })
}
