package service

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/authmilter/authmilter/internal/incoming"
	"github.com/authmilter/authmilter/internal/milter"
	"github.com/authmilter/authmilter/pkg/headerblock"
	"github.com/authmilter/authmilter/pkg/identity"
)

// Incoming is the milter hook for the aggregate reports other receivers
// send to the site's rua mailboxes (issue 22): mail to one of Recipients
// is kept whole (up to MaxBytes) and read as a report mail at end of
// message, after the usual checks. Mail to no listed recipient costs one
// map lookup per recipient: the hook stays off the path of ordinary mail.
type Incoming struct {
	Ingester *incoming.Ingester
	// Recipients are the rua mailboxes, lower case, without angle brackets.
	Recipients map[string]bool
	// Discard: a report mail whose reports are all in the store, sent to
	// rua mailboxes only, is discarded instead of delivered.
	Discard  bool
	MaxBytes int64
	// slots bounds the report mails kept at once, and so the memory of
	// the hook: MaxConcurrent × MaxBytes. A report mail that finds no slot
	// is delivered unread (logged, counted invalid).
	slots chan struct{}
}

// MaxConcurrent is how many report mails the hook keeps at once.
const MaxConcurrent = 4

// NewIncoming returns the hook for the rua mailboxes rcpts; nil when there
// are none.
func NewIncoming(in *incoming.Ingester, rcpts []string, discard bool, maxBytes int64) *Incoming {
	if len(rcpts) == 0 || in == nil {
		return nil
	}
	m := make(map[string]bool, len(rcpts))
	for _, r := range rcpts {
		m[mailboxKey(r)] = true
	}
	return &Incoming{Ingester: in, Recipients: m, Discard: discard, MaxBytes: maxBytes, slots: make(chan struct{}, MaxConcurrent)}
}

// mailboxKey is how recipients are compared: without the path's angle
// brackets, the domain in its ASCII form, all lower case (local parts of
// rua mailboxes are compared without regard to case, as MTAs do for the
// usual ones).
func mailboxKey(addr string) string {
	local, dom, ok := identity.SplitAddress(addr)
	if !ok {
		return strings.ToLower(local)
	}
	if a, err := identity.ASCII(dom); err == nil {
		dom = a
	}
	return strings.ToLower(local) + "@" + dom
}

// capture is a report mail being kept for the hook.
type capture struct {
	buf      bytes.Buffer
	over     bool // larger than MaxBytes: not read (logged, counted invalid)
	busy     bool // no slot free: not kept, not read (logged, counted invalid)
	matched  int  // recipients that are rua mailboxes
	headered bool

	slots chan struct{} // the hook's slots; nil when busy (no slot taken)
	free  sync.Once     // gives the slot back exactly once (End or Abort)
}

// release gives the capture's slot back; safe to call more than once and
// from another goroutine.
func (c *capture) release() {
	c.free.Do(func() {
		if c.slots != nil {
			<-c.slots
		}
	})
}

func (c *capture) write(max int64, p []byte) {
	if c.over {
		return
	}
	if int64(c.buf.Len()+len(p)) > max {
		c.over = true
		c.buf = bytes.Buffer{}
		return
	}
	c.buf.Write(p)
}

// recipient notes a recipient; it starts the capture for a rua mailbox.
func (m *Message) incomingRecipient(addr string) {
	h := m.s.Incoming
	if h == nil || !h.Recipients[mailboxKey(addr)] {
		return
	}
	c := m.report.Load()
	if c == nil {
		c = &capture{}
		select {
		case h.slots <- struct{}{}:
			c.slots = h.slots
		default:
			c.busy, c.over = true, true // keeps nothing
		}
		m.report.Store(c) // published complete: Abort may load it from another goroutine
	}
	c.matched++
}

// incomingDone frees the message's slot (once, whoever calls it first).
func (m *Message) incomingDone() {
	if c := m.report.Load(); c != nil {
		c.release()
	}
}

func (m *Message) incomingHeader(name, value string) {
	if c := m.report.Load(); c != nil {
		c.write(m.s.Incoming.MaxBytes, headerblock.Append(nil, name, value))
	}
}

func (m *Message) incomingEOH() {
	if c := m.report.Load(); c != nil && !c.headered {
		c.headered = true
		c.write(m.s.Incoming.MaxBytes, []byte("\r\n"))
	}
}

func (m *Message) incomingBody(chunk []byte) {
	if c := m.report.Load(); c != nil {
		c.write(m.s.Incoming.MaxBytes, chunk)
	}
}

// incomingEnd reads and stores the captured report mail; it returns
// whether the message may be discarded.
func (m *Message) incomingEnd(ctx context.Context, queueID string) (discard bool) {
	c, h := m.report.Load(), m.s.Incoming
	if c == nil {
		return false
	}
	c.release()
	where := "milter queue_id=" + queueID
	if c.busy {
		h.Ingester.Refused(where, fmt.Sprintf("more than %d report mails at once: delivered unread", MaxConcurrent))
		return false
	}
	if c.over {
		h.Ingester.Refused(where, "report mail over incoming_reports.max_mail_bytes")
		return false
	}
	res, err := h.Ingester.Mail(ctx, &c.buf, where)
	if err != nil {
		return false // logged and counted by the ingester; the mail is delivered
	}
	return h.Discard && res.Done() && c.matched == len(m.rcpts)
}

// discardVerdict is what a discarded report mail gets.
var discardVerdict = milter.Verdict{Discard: true}
