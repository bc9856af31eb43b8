package main

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// verdict is the outcome of one message across the chain.
type verdict int

const (
	vAccept verdict = iota
	vReject
	vTempfail
	vDiscard
	vQuarantine
	numVerdicts
)

var verdictNames = [numVerdicts]string{"accept", "reject", "tempfail", "discard", "quarantine"}

// outcome is what one message produced.
type outcome struct {
	verdict     verdict
	headerAdded bool
	headerEdit  bool          // a field was changed or deleted
	content     time.Duration // first header event to the last milter's final reply
	eom         time.Duration // end-of-message events to their replies, summed over the milters
	trace       []string      // what each milter did at end of message, when tracing
	queueID     string        // the i macro
	acked       bool          // an end-of-message reply arrived (from the last milter that got one)
}

// smtpConn is one SMTP connection as Postfix would open it: one milter
// connection per milter in the chain, the connection-level events already
// sent.
type smtpConn struct {
	trace    bool // record replies and edits in outcome.trace
	milters  []*mconn
	done     []bool   // the milter accepted the connection: no more events
	rejected *verdict // a milter refused the connection
	vals     map[string]string
	first    *message
	qidPre   string // queue id prefix (-qid-prefix)
}

// queueSeq numbers messages across all connections, so that queue ids are
// unique within a run (as Postfix's are within a host): -acked logs them.
var queueSeq atomic.Uint64

// openConn dials every milter and sends CONNECT and HELO the way Postfix
// does: each event to every milter in turn.
func openConn(specs []milterSpec, timeout time.Duration, mtaHost string, m *message, port uint16, drop *dropper) (*smtpConn, error) {
	c := &smtpConn{done: make([]bool, len(specs)), first: m}
	for _, s := range specs {
		mc, err := dial(s.label, s.network, s.address, timeout, drop)
		if err != nil {
			c.close()
			return nil, err
		}
		c.milters = append(c.milters, mc)
	}
	name := m.clientName
	host := name
	if name == "" {
		name, host = "unknown", "["+m.clientIP.String()+"]"
	}
	c.vals = map[string]string{
		"j": mtaHost, "{daemon_name}": mtaHost, "{daemon_addr}": "127.0.0.1", "{daemon_port}": "25",
		"v": "Postfix 3.7.11", "_": name + " [" + m.clientIP.String() + "]",
		"{client_addr}": m.clientIP.String(), "{client_name}": name, "{client_ptr}": name,
		"{client_port}": strconv.Itoa(int(port)), "{client_connections}": "0",
	}
	family := byte('4')
	if m.clientIP.Is6() {
		family = '6'
	}
	connect := func(p []byte) []byte {
		p = appendCString(p, host)
		p = append(p, family)
		p = binary.BigEndian.AppendUint16(p, port)
		return appendCString(p, m.clientIP.String())
	}
	helo := func(p []byte) []byte { return appendCString(p, m.helo) }
	for _, ev := range []struct {
		code       byte
		stage      int
		skip, nr   uint32
		fill       func([]byte) []byte
		whatFailed string
	}{
		{'C', stageConnect, pNoConnect, pNRConn, connect, "connect"},
		{'H', stageHelo, pNoHelo, pNRHelo, helo, "helo"},
	} {
		for i, mc := range c.milters {
			if c.done[i] || mc.protocol&ev.skip != 0 {
				continue
			}
			if err := mc.sendMacros(ev.code, ev.stage, c.vals); err != nil {
				c.close()
				return nil, fmt.Errorf("%s: %s: %w", mc.name, ev.whatFailed, err)
			}
			r, err := mc.event(ev.code, mc.protocol&ev.nr != 0, ev.fill, nil)
			if err != nil {
				c.close()
				return nil, err
			}
			switch v, final := replyVerdict(r); {
			case r.code == 'a':
				c.done[i] = true
			case final:
				c.rejected = &v
			}
		}
		if c.rejected != nil {
			break
		}
	}
	return c, nil
}

// replyVerdict maps a reply that ends the message to its verdict; final
// is false for continue, accept and skip.
func replyVerdict(r reply) (verdict, bool) {
	switch r.code {
	case 'r':
		return vReject, true
	case 't':
		return vTempfail, true
	case 'd':
		return vDiscard, true
	case 'y':
		if strings.HasPrefix(r.text, "4") {
			return vTempfail, true
		}
		return vReject, true
	}
	return vAccept, false
}

func (c *smtpConn) close() {
	for _, m := range c.milters {
		m.close()
	}
}

// quit ends the SMTP session: Postfix sends one more Abort, then Quit.
// With a drop point still ahead (the estimate was high: messages ended
// early, events the milter skipped) the connection is closed instead,
// without Quit, and errDropped returned: a connection picked for a drop
// is always dropped.
func (c *smtpConn) quit(drop *dropper) error {
	if drop != nil && !drop.done {
		drop.left, drop.after = 1, false
	}
	for _, m := range c.milters {
		_ = m.abort()
		m.quit()
	}
	if drop != nil && drop.done {
		return errDropped
	}
	return nil
}

// send runs one message through the chain: envelope events interleaved
// per event, then the content phase milter by milter, each later milter
// seeing the header edits of the earlier ones applied (as Postfix 3.7 does
// with OpenDKIM in front of another milter), then Abort to every milter.
func (c *smtpConn) send(msg *message) (outcome, error) {
	var out outcome
	if c.rejected != nil {
		out.verdict = *c.rejected
		return out, nil
	}
	qid := fmt.Sprintf("%s%011X", c.qidPre, queueSeq.Add(1))
	out.queueID = qid
	vals := c.vals
	from := msg.mailFrom
	vals["{mail_addr}"] = from
	if at := strings.LastIndexByte(from, '@'); at >= 0 {
		vals["{mail_host}"] = from[at+1:]
	} else {
		vals["{mail_host}"] = vals["j"]
	}
	vals["{mail_mailer}"] = "smtp"
	delete(vals, "i")
	active := make([]bool, len(c.milters))
	for i := range active {
		active[i] = !c.done[i]
	}
	finish := func(err error) (outcome, error) {
		for _, m := range c.milters {
			if aerr := m.abort(); aerr != nil && err == nil {
				err = aerr
			}
		}
		return out, err
	}
	// envelope sends one envelope event to every active milter; it
	// reports whether the message ended there.
	envelope := func(code byte, stage int, skip, nr uint32, fill func([]byte) []byte) (bool, error) {
		for i, m := range c.milters {
			if !active[i] || m.protocol&skip != 0 {
				continue
			}
			if err := m.sendMacros(code, stage, vals); err != nil {
				return true, err
			}
			r, err := m.event(code, m.protocol&nr != 0, fill, nil)
			if err != nil {
				return true, err
			}
			if c.trace && r.code != 'c' {
				out.trace = append(out.trace, fmt.Sprintf("%s: %c reply %c %s", m.name, code, r.code, r.text))
			}
			if r.code == 'a' {
				active[i] = false
			} else if v, final := replyVerdict(r); final {
				out.verdict = v
				return true, nil
			}
		}
		return false, nil
	}
	size := strconv.Itoa(len(msg.body) + 1024)
	ended, err := envelope('M', stageMail, pNoMail, pNRMail, func(p []byte) []byte {
		p = appendCString(p, "<"+from+">")
		return appendCString(p, "SIZE="+size)
	})
	if err != nil || ended {
		return finish(err)
	}
	for _, rcpt := range msg.rcpts {
		vals["{rcpt_addr}"] = strings.ToLower(rcpt)
		vals["{rcpt_host}"] = rcpt[strings.LastIndexByte(rcpt, '@')+1:]
		vals["{rcpt_mailer}"] = "local"
		ended, err := envelope('R', stageRcpt, pNoRcpt, pNRRcpt, func(p []byte) []byte {
			return appendCString(p, "<"+rcpt+">")
		})
		if err != nil || ended {
			return finish(err)
		}
	}
	vals["i"] = qid // the queue file exists from here on
	ended, err = envelope('T', stageData, pNoData, pNRData, nil)
	if err != nil || ended {
		return finish(err)
	}

	// Content phase, one milter after the other.
	start := time.Now()
	fields := msg.fields
	owned := false // fields is still the corpus's slice
	for i, m := range c.milters {
		if !active[i] {
			continue
		}
		lead := m.protocol&pLeadSpace != 0
		ended, accepted, err := c.content(m, fields, msg.body, vals, lead, &out)
		if err != nil {
			return finish(err)
		}
		if ended {
			out.content = time.Since(start)
			return finish(nil)
		}
		if accepted {
			continue
		}
		var mods []modification
		t := time.Now()
		if err := m.sendMacros('E', stageEOM, vals); err != nil {
			return finish(err)
		}
		r, err := m.event('E', false, nil, &mods)
		out.eom += time.Since(t)
		if err != nil {
			out.acked = false
			return finish(err)
		}
		out.acked = true
		if c.trace {
			for _, mod := range mods {
				out.trace = append(out.trace, fmt.Sprintf("%s: %c %d %s: %q", m.name, mod.code, mod.index, mod.name, mod.value))
			}
			out.trace = append(out.trace, fmt.Sprintf("%s: reply %c %s", m.name, r.code, r.text))
		}
		for _, mod := range mods {
			switch mod.code {
			case 'h', 'i', 'm':
				if !owned {
					fields = append([]field(nil), fields...)
					owned = true
				}
				fields = applyHeaderMod(fields, mod, lead)
				if mod.code == 'm' {
					out.headerEdit = true
				} else {
					out.headerAdded = true
				}
			case 'q':
				out.verdict = vQuarantine
			}
		}
		if v, final := replyVerdict(r); final {
			out.verdict = v
		}
		if out.verdict != vAccept {
			// Postfix stops the content phase at the first milter that
			// rejects, tempfails, discards or quarantines (§3).
			break
		}
	}
	out.content = time.Since(start)
	return finish(nil)
}

// content sends headers, end of headers and the body to one milter. ended:
// a reply ended the message (out.verdict set); accepted: the milter
// accepted the message, skip its end of message.
func (c *smtpConn) content(m *mconn, fields []field, body []byte, vals map[string]string, lead bool, out *outcome) (ended, accepted bool, err error) {
	check := func(r reply) (bool, bool) {
		if c.trace && r.code != 'c' {
			out.trace = append(out.trace, fmt.Sprintf("%s: content reply %c %s", m.name, r.code, r.text))
		}
		if r.code == 'a' {
			return false, true
		}
		if v, final := replyVerdict(r); final {
			out.verdict = v
			return true, false
		}
		return false, false
	}
	if m.protocol&pNoHdrs == 0 {
		nr := m.protocol&pNRHdr != 0
		for _, f := range fields {
			value := f.raw
			if !lead {
				value = strings.TrimPrefix(value, " ") // Postfix drops exactly one space
			}
			if err := m.sendMacros('L', stageEOH, vals); err != nil {
				return true, false, err
			}
			r, err := m.event('L', nr, func(p []byte) []byte {
				p = appendCString(p, f.name)
				return appendCString(p, value)
			}, nil)
			if err != nil {
				return true, false, err
			}
			if e, a := check(r); e || a {
				return e, a, nil
			}
		}
	}
	if m.protocol&pNoEOH == 0 {
		if err := m.sendMacros('N', stageEOH, vals); err != nil {
			return true, false, err
		}
		r, err := m.event('N', m.protocol&pNREOH != 0, nil, nil)
		if err != nil {
			return true, false, err
		}
		if e, a := check(r); e || a {
			return e, a, nil
		}
	}
	if m.protocol&pNoBody == 0 {
		nr := m.protocol&pNRBody != 0
		for rest := body; len(rest) > 0; {
			chunk := rest[:min(len(rest), maxBodyChunk)]
			rest = rest[len(chunk):]
			if err := m.sendMacros('B', stageEOM, vals); err != nil {
				return true, false, err
			}
			r, err := m.event('B', nr, func(p []byte) []byte { return append(p, chunk...) }, nil)
			if err != nil {
				return true, false, err
			}
			if r.code == 's' {
				break // SMFIP_SKIP: no more body
			}
			if e, a := check(r); e || a {
				return e, a, nil
			}
		}
	}
	return false, false, nil
}

// applyHeaderMod applies one header edit the way Postfix's cleanup does,
// for the next milter in the chain. Values from a milter that negotiated
// SMFIP_HDR_LEADSPC are stored as given; otherwise with one space after
// the colon.
func applyHeaderMod(fields []field, mod modification, lead bool) []field {
	raw := strings.ReplaceAll(mod.value, "\r\n", "\n")
	if !lead && raw != "" {
		raw = " " + raw
	}
	switch mod.code {
	case 'h': // append at the end of the header
		return append(fields, field{name: mod.name, raw: raw})
	case 'i':
		// Index 0 is above the MTA's own (hidden) Received: field, index
		// 1 just below it: insert indexes count Received although header
		// events never show it (checked with Postfix 3.7).
		pos := 0
		if mod.index > 1 {
			pos = int(mod.index) - 1
		}
		pos = min(pos, len(fields))
		fields = append(fields, field{})
		copy(fields[pos+1:], fields[pos:])
		fields[pos] = field{name: mod.name, raw: raw}
		return fields
	case 'm': // 1-based among fields of that name; empty value deletes
		n := 0
		for i, f := range fields {
			if !strings.EqualFold(f.name, mod.name) {
				continue
			}
			if n++; n == int(mod.index) {
				if mod.value == "" {
					return append(fields[:i], fields[i+1:]...)
				}
				fields[i].raw = raw
				return fields
			}
		}
		if mod.value != "" {
			return append(fields, field{name: mod.name, raw: raw})
		}
	}
	return fields
}
