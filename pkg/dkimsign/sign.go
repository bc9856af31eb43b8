// Package dkimsign signs outbound mail with DKIM (RFC 6376; Ed25519 keys
// per RFC 8463): it loads private keys, picks them by the From domain from
// a signing table, and computes the DKIM-Signature fields while the body
// streams through, never holding the whole message.
//
// The cryptography and canonicalization are go-msgauth's streaming
// dkim.Signer; this package adds the key files and tables, the choice of
// signed header fields (RFC 6376 §5.4.1, with From oversigned), x=, and a
// header block in the same form pkg/dkimverify reads (see pkg/headerblock).
package dkimsign

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

// Canonicalization names (RFC 6376 §3.4).
const (
	Relaxed = "relaxed"
	Simple  = "simple"
)

// DefaultHeaders are the fields signed when present, in this order: RFC
// 6376 §5.4.1's recommended set plus the MIME fields, as OpenDKIM signs by
// default. Trace fields (Received, Return-Path), DKIM-Signature and
// Authentication-Results are never signed: they change in transit.
var DefaultHeaders = []string{
	"From", "Sender", "Reply-To", "Subject", "Date", "Message-ID", "To", "Cc",
	"MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Content-ID",
	"Content-Description", "Resent-Date", "Resent-From", "Resent-Sender",
	"Resent-To", "Resent-Cc", "Resent-Message-ID", "In-Reply-To", "References",
	"List-Id", "List-Help", "List-Unsubscribe", "List-Subscribe", "List-Post",
	"List-Owner", "List-Archive",
}

// DefaultOversign are the fields signed once more than they occur, so that
// adding another instance breaks the signature (RFC 6376 §5.4.2, §8.15).
var DefaultOversign = []string{"From"}

// ErrOptions is wrapped by the errors of Options.Validate.
var ErrOptions = errors.New("dkimsign: bad signing options")

// ErrSign wraps a failure of go-msgauth's signer (malformed header block,
// key error).
var ErrSign = errors.New("dkimsign: signing failed")

// Options tune signing. A nil *Options, or a zero field, means the default.
type Options struct {
	// HeaderCanonicalization and BodyCanonicalization are Relaxed (the
	// default) or Simple.
	HeaderCanonicalization, BodyCanonicalization string
	// Headers are the fields signed when present (default DefaultHeaders).
	// It must include From (RFC 6376 §5.4).
	Headers []string
	// Oversign are fields listed in h= once more than they occur (default
	// DefaultOversign). Each must also be in Headers. A one-element list
	// holding "" means none.
	Oversign []string
	// Expire, when positive, adds x= (signing time + Expire, RFC 6376
	// §3.5); zero means no x=.
	Expire time.Duration
}

func (o *Options) withDefaults() Options {
	var d Options
	if o != nil {
		d = *o
	}
	if d.HeaderCanonicalization == "" {
		d.HeaderCanonicalization = Relaxed
	}
	if d.BodyCanonicalization == "" {
		d.BodyCanonicalization = Relaxed
	}
	if d.Headers == nil {
		d.Headers = DefaultHeaders
	}
	if d.Oversign == nil {
		d.Oversign = DefaultOversign
	} else if len(d.Oversign) == 1 && d.Oversign[0] == "" {
		d.Oversign = []string{}
	}
	return d
}

// Validate reports options that would make signing fail, so that a
// configuration can be refused at load time.
func (o *Options) Validate() error {
	d := o.withDefaults()
	var errs []error
	for _, c := range []string{d.HeaderCanonicalization, d.BodyCanonicalization} {
		if c != Relaxed && c != Simple {
			errs = append(errs, fmt.Errorf("%w: canonicalization %q (want relaxed or simple)", ErrOptions, c))
		}
	}
	if !containsFold(d.Headers, "From") {
		errs = append(errs, fmt.Errorf("%w: the signed headers must include From (RFC 6376 §5.4)", ErrOptions))
	}
	for _, h := range d.Headers {
		if !validFieldName(h) {
			errs = append(errs, fmt.Errorf("%w: bad header field name %q", ErrOptions, h))
		}
	}
	for _, h := range d.Oversign {
		if !containsFold(d.Headers, h) {
			errs = append(errs, fmt.Errorf("%w: oversigned field %q is not a signed field", ErrOptions, h))
		}
	}
	if d.Expire < 0 {
		errs = append(errs, fmt.Errorf("%w: negative expiry", ErrOptions))
	}
	return errors.Join(errs...)
}

// validFieldName is RFC 5322 §3.6.8 ftext: printable US-ASCII but ":".
func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 || s[i] == ':' {
			return false
		}
	}
	return true
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// Signer signs one message with one or more keys. It is fed by one
// goroutine: Start, Write for each body chunk, then Finish or Abort.
type Signer struct {
	sigs  []*dkim.Signer
	names []string // key names, for errors
	errs  []error  // per signature; set when a Write or NewSigner failed
	done  bool
}

// Start begins signing a message whose complete header block is header
// (each field "Name:value\r\n" byte-exact, see pkg/headerblock, optionally
// followed by the empty line) with each of keys; Table.Select gives them.
// The header is written to the signers at once and not kept. Errors
// (invalid options, a malformed header) are reported by Finish. With no
// keys, Finish returns nothing.
//
// The caller must end with Finish or Abort, or a goroutine per key leaks.
func Start(header []byte, keys []*LoadedKey, o *Options) *Signer {
	s := &Signer{}
	if len(keys) == 0 {
		return s
	}
	opts := o.withDefaults()
	verr := o.Validate()
	hkeys := headerKeys(header, opts)
	var expires time.Time
	if opts.Expire > 0 {
		expires = time.Now().Add(opts.Expire)
	}
	hdr := terminate(header)
	for _, k := range keys {
		s.names = append(s.names, k.Name)
		if verr != nil {
			s.sigs, s.errs = append(s.sigs, nil), append(s.errs, verr)
			continue
		}
		ds, err := dkim.NewSigner(&dkim.SignOptions{
			Domain:                 k.Domain,
			Selector:               k.Selector,
			Signer:                 k.Signer,
			HeaderCanonicalization: dkim.Canonicalization(opts.HeaderCanonicalization),
			BodyCanonicalization:   dkim.Canonicalization(opts.BodyCanonicalization),
			HeaderKeys:             hkeys,
			Expiration:             expires,
		})
		if err != nil {
			s.sigs, s.errs = append(s.sigs, nil), append(s.errs, fmt.Errorf("%w: %w", ErrSign, err))
			continue
		}
		s.sigs, s.errs = append(s.sigs, ds), append(s.errs, nil)
	}
	s.write(hdr)
	return s
}

// terminate makes sure the header block ends with the empty line that
// separates it from the body.
func terminate(h []byte) []byte {
	switch {
	case bytes.HasSuffix(h, []byte("\r\n\r\n")) || bytes.Equal(h, []byte("\r\n")):
		return h
	case bytes.HasSuffix(h, []byte("\r\n")):
		return append(h[:len(h):len(h)], '\r', '\n')
	case len(h) == 0:
		return []byte("\r\n")
	}
	return append(h[:len(h):len(h)], "\r\n\r\n"...)
}

// headerKeys builds h=: each field of opts.Headers as many times as it
// occurs in the header block, once more if oversigned. go-msgauth picks
// repeated fields from the bottom up, as verifiers do (RFC 6376 §5.4.2).
func headerKeys(header []byte, opts Options) []string {
	count := map[string]int{}
	for _, name := range fieldNames(header) {
		count[strings.ToLower(name)]++
	}
	var keys []string
	for _, h := range opts.Headers {
		n := count[strings.ToLower(h)]
		if containsFold(opts.Oversign, h) {
			n++
		}
		for range n {
			keys = append(keys, h)
		}
	}
	return keys
}

// fieldNames lists the names of the fields in a header block, in order
// (continuation lines start with SP or HTAB, RFC 5322 §2.2.3).
func fieldNames(h []byte) []string {
	var names []string
	for len(h) > 0 {
		line := h
		if i := bytes.IndexByte(h, '\n'); i >= 0 {
			line, h = h[:i], h[i+1:]
		} else {
			h = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue
		}
		if name, _, ok := bytes.Cut(line, []byte(":")); ok {
			names = append(names, string(bytes.TrimSpace(name)))
		}
	}
	return names
}

// Write passes a chunk of the body (CRLF line ends, as the MTA sends it)
// to every signer. It blocks until the chunk is hashed, so nothing
// accumulates. It never fails: a signer that failed is skipped and its
// error comes from Finish.
func (s *Signer) Write(body []byte) (int, error) {
	if !s.done {
		s.write(body)
	}
	return len(body), nil
}

func (s *Signer) write(p []byte) {
	for i, ds := range s.sigs {
		if ds == nil || s.errs[i] != nil {
			continue
		}
		if _, err := ds.Write(p); err != nil {
			s.errs[i] = fmt.Errorf("%w: %w", ErrSign, err)
		}
	}
}

// Finish ends the body and returns the values of the DKIM-Signature fields,
// one per key in the order of the keys given to Start, for the caller to
// insert at the top of the header with the first value topmost. Each value
// is what follows "DKIM-Signature:": it starts with a space and is folded
// with CRLF + SP (an MTA's milter interface may want bare LF folds).
//
// When some keys failed, the others' values are still returned, with an
// error naming the failed keys.
func (s *Signer) Finish() ([]string, error) {
	if s.done {
		return nil, fmt.Errorf("%w: Finish after Finish or Abort", ErrSign)
	}
	s.done = true
	var values []string
	var errs []error
	for i, ds := range s.sigs {
		err := s.errs[i]
		if ds != nil {
			if cerr := ds.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("%w: %w", ErrSign, cerr)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("key %q: %w", s.names[i], err))
			continue
		}
		v := strings.TrimPrefix(ds.Signature(), "DKIM-Signature:")
		values = append(values, strings.TrimSuffix(v, "\r\n"))
	}
	return values, errors.Join(errs...)
}

// Abort releases a message that will not be finished (the SMTP transaction
// was aborted). It does not wait. Abort after Finish does nothing.
func (s *Signer) Abort() {
	if s.done {
		return
	}
	s.done = true
	sigs := s.sigs
	// go-msgauth's signer has no way to cancel: closing it completes the
	// signature (one private-key operation), which we drop.
	go func() {
		for _, ds := range sigs {
			if ds != nil {
				_ = ds.Close()
			}
		}
	}()
}
