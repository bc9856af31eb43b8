package milter_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/authmilter/authmilter/internal/testmilter"
	"github.com/authmilter/authmilter/pkg/authres"
)

// Beyond MaxSessions a new connection is answered at once: OPTNEG, then
// tempfail to CONNECT. It never hangs, and a freed slot is used again.
func TestRobustMaxSessions(t *testing.T) {
	r := newRig(t, robustZone, rigOptions{maxSessions: 2})
	var open []*gomilter.ClientSession
	for i := range 2 {
		s, err := r.client()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		a, err := s.Conn("client.test", gomilter.FamilyInet, 25, "192.0.2.1")
		if err != nil || a.Code != gomilter.ActContinue {
			t.Fatalf("session %d: %v %v", i, a, err)
		}
		open = append(open, s)
	}
	over, err := r.client()
	if err != nil {
		t.Fatalf("OPTNEG beyond the limit: %v", err)
	}
	a, err := over.Conn("client.test", gomilter.FamilyInet, 25, "192.0.2.1")
	if err != nil {
		t.Fatalf("CONNECT beyond the limit: %v", err)
	}
	if a.Code != gomilter.ActTempFail {
		t.Fatalf("CONNECT beyond the limit: action %c, want t (tempfail)", a.Code)
	}
	// Every later command gets tempfail as well.
	if a, err := over.Helo("x.test"); err != nil || a.Code != gomilter.ActTempFail {
		t.Errorf("HELO beyond the limit: %v %v", a, err)
	}
	over.Close()
	if n := r.srv.Refused(); n != 1 {
		t.Errorf("Refused() = %d, want 1", n)
	}
	// The sessions under the limit still work.
	m := stdMessage("sender.test")
	s0 := open[0]
	if _, err := s0.Helo(m.helo); err != nil {
		t.Fatal(err)
	}
	// Free a slot: a new session gets in (poll: the close is seen by the
	// server asynchronously).
	open[1].Close()
	deadline := time.Now().Add(20 * time.Second)
	for r.srv.Sessions() > 1 {
		if time.Now().After(deadline) {
			t.Fatalf("closed session still counted: %d", r.srv.Sessions())
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.sendOne(t, m)
}

// A connection silent for IdleTimeout is closed, and so is one that
// trickles a packet a byte at a time (slowloris): the whole packet must
// arrive within IdleTimeout of its first byte.
func TestRobustSlowloris(t *testing.T) {
	r := newRig(t, robustZone, rigOptions{idle: 400 * time.Millisecond})

	t.Run("silent", func(t *testing.T) {
		c, err := net.Dial("tcp", r.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, ended, err := readReplies(c, 20*time.Second)
		if err != nil || !ended {
			t.Fatalf("silent connection not closed: ended=%v err=%v", ended, err)
		}
	})

	t.Run("trickle", func(t *testing.T) {
		c, err := net.Dial("tcp", r.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(optneg()); err != nil {
			t.Fatal(err)
		}
		// A 200-byte HELO packet at one byte per 50 ms takes 10 s: each
		// byte comes well within IdleTimeout of the one before.
		p := pkt('H', cstr(strings.Repeat("h", 198)))
		var sent atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range p {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				if _, err := c.Write(p[i : i+1]); err != nil {
					return
				}
				sent.Add(1)
			}
		}()
		codes, ended, err := readReplies(c, 30*time.Second)
		close(stop)
		wg.Wait()
		if err != nil || !ended {
			t.Fatalf("trickling connection not closed: ended=%v err=%v", ended, err)
		}
		if string(codes) != "O" {
			t.Errorf("replies %q, want only the OPTNEG reply", codes)
		}
		if n := sent.Load(); n >= int64(len(p)) {
			t.Errorf("the whole %d-byte packet got through before the close", n)
		}
	})
	settleSessions(t, r)
	r.sendOne(t, stdMessage("sender.test"))
}

func settleSessions(t *testing.T, r *rig) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for r.srv.Sessions() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions still open", r.srv.Sessions())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The MTA goes away at every stage of a message, cleanly between packets
// and in the middle of one. The daemon serves on, and no session is left.
func TestRobustDisconnectEveryStage(t *testing.T) {
	r := newRig(t, signedZone(t), rigOptions{})
	stages := rawStages(t)
	baseG := runtime.NumGoroutine()
	baseFD := openFDs(t)
	for k := range stages {
		for _, half := range []bool{false, true} {
			c, err := net.Dial("tcp", r.addr)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range stages[:k] {
				if _, err := c.Write(s); err != nil {
					t.Fatal(err)
				}
			}
			if half {
				if _, err := c.Write(stages[k][:len(stages[k])/2]); err != nil {
					t.Fatal(err)
				}
			}
			// Read what was answered so far, then vanish.
			readReplies(c, 100*time.Millisecond) //nolint:errcheck
			c.Close()
		}
	}
	settleSessions(t, r)
	settle(t, baseG, baseFD, 5)
	r.sendOne(t, stdMessage("sender.test"))
	if s := libLog.String(); strings.Contains(s, "panic") {
		t.Errorf("go-milter logged a panic:\n%s", testmilter.Tail(s, 4000))
	}
}

// Postfix sends Abort in the middle of a body (the client went away): the
// DKIM verification in flight is released, and the next message on the
// same connection is checked normally.
func TestRobustAbortMidBody(t *testing.T) {
	r := newRig(t, robustZone, rigOptions{})
	baseG := runtime.NumGoroutine()
	s, err := r.client()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, step := range []func() (*gomilter.Action, error){
		func() (*gomilter.Action, error) { return s.Conn("client.test", gomilter.FamilyInet, 25, "192.0.2.1") },
		func() (*gomilter.Action, error) { return s.Helo("mx.sender.test") },
		func() (*gomilter.Action, error) { return s.Mail("<alice@sender.test>", nil) },
		func() (*gomilter.Action, error) { return s.Rcpt("<rcpt@rcpt.test>", nil) },
		func() (*gomilter.Action, error) {
			return s.HeaderField("DKIM-Signature", " v=1; a=rsa-sha256; d=sender.test; s=s; h=from; bh=x; b=y")
		},
		func() (*gomilter.Action, error) { return s.HeaderField("From", " <alice@sender.test>") },
		s.HeaderEnd,
		func() (*gomilter.Action, error) { return s.BodyChunk([]byte("first part\r\n")) },
	} {
		if a, err := step(); err != nil || a.Code != gomilter.ActContinue {
			t.Fatalf("%v %v", a, err)
		}
	}
	if err := s.Abort(); err != nil {
		t.Fatal(err)
	}
	// The next message on the same connection (Postfix sends no new
	// CONNECT/HELO): SPF still knows the client.
	m := stdMessage("sender.test")
	for _, step := range []func() (*gomilter.Action, error){
		func() (*gomilter.Action, error) { return s.Mail("<"+m.from+">", nil) },
		func() (*gomilter.Action, error) { return s.HeaderField("From", m.headers[0][1]) },
		s.HeaderEnd,
		func() (*gomilter.Action, error) { return s.BodyChunk([]byte("x\r\n")) },
	} {
		if a, err := step(); err != nil || a.Code != gomilter.ActContinue {
			t.Fatalf("%v %v", a, err)
		}
	}
	mods, _, err := s.End()
	if err != nil {
		t.Fatal(err)
	}
	ar := testmilter.Result{Mods: mods}.AR()
	if !strings.Contains(ar, "spf=pass") || !strings.Contains(ar, "dkim=none") {
		t.Errorf("second message A-R:\n%s", ar)
	}
	s.Close()
	settleSessions(t, r)
	settle(t, baseG, openFDs(t), 5)
}

// A body with no header at all (no header packets, no EOH): checked, with
// dmarc=permerror for the missing From, and rejected (dmarc.unusable_from,
// issue #15).
func TestRobustBodyWithoutHeaders(t *testing.T) {
	r := newRig(t, robustZone, rigOptions{})
	m := stdMessage("sender.test")
	m.headers = nil
	s, err := r.client()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, step := range []func() (*gomilter.Action, error){
		func() (*gomilter.Action, error) { return s.Conn("client.test", gomilter.FamilyInet, 25, m.ip) },
		func() (*gomilter.Action, error) { return s.Helo(m.helo) },
		func() (*gomilter.Action, error) { return s.Mail("<"+m.from+">", nil) },
		func() (*gomilter.Action, error) { return s.BodyChunk([]byte("no header here\r\n")) },
	} {
		if a, err := step(); err != nil || a.Code != gomilter.ActContinue {
			t.Fatalf("%v %v", a, err)
		}
	}
	mods, act, err := s.End()
	if err != nil {
		t.Fatal(err)
	}
	ar := testmilter.Result{Mods: mods}.AR()
	_, rs := authres.Parse(ar)
	got := map[string]string{}
	for _, x := range rs {
		if got[x.Method] == "" { // the first spf= is the MAIL FROM one
			got[x.Method] = x.Value
		}
	}
	if got["spf"] != "pass" || got["dkim"] != "none" || got["dmarc"] != "permerror" {
		t.Errorf("A-R %q: results %v", ar, got)
	}
	if act.Code != gomilter.ActReplyCode || act.SMTPCode != 550 {
		t.Errorf("action %c %d %s, want the 550 reject of an unusable From", act.Code, act.SMTPCode, act.SMTPText)
	}
}

// Commands out of order, repeated or missing: every sequence gets answers
// (or a close) and never a panic; the daemon serves on.
func TestRobustOutOfOrder(t *testing.T) {
	r := newRig(t, signedZone(t), rigOptions{})
	st := rawStages(t)
	st = append(st[:6], append([][]byte{pkt('L', cstr("DKIM-Signature"), cstr(" v=1; d=x"))}, st[6:]...)...)
	const (
		opt, conn, helo, mail, rcpt, from, dkim, eoh, body1, body2, eom, abort, quit = 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12
	)
	seq := func(ix ...int) []byte {
		var b []byte
		for _, i := range ix {
			b = append(b, st[i]...)
		}
		return b
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"EOM first", seq(opt, eom, quit)},
		{"no OPTNEG", seq(conn, helo, mail, eom, quit)},
		{"headers before MAIL", seq(opt, conn, from, dkim, eoh, body1, eom, quit)},
		{"body before MAIL", seq(opt, conn, body1, body2, eom, quit)},
		{"two MAILs", seq(opt, conn, helo, mail, from, mail, from, eoh, eom, abort, quit)},
		{"EOH twice, header after body", seq(opt, conn, mail, from, eoh, eoh, body1, dkim, from, eom, quit)},
		{"EOM twice", seq(opt, conn, mail, from, eoh, eom, eom, abort, abort, quit)},
		{"abort before anything", seq(abort, abort, opt, abort, quit)},
		{"CONNECT twice mid-message", seq(opt, conn, mail, dkim, conn, body1, eom, quit)},
		{"OPTNEG twice", seq(opt, opt, conn, mail, eom, quit)},
		{"message then garbage", append(seq(opt, conn, helo, mail, rcpt, from, eoh, body1, eom), 0, 0, 0, 3, 'Z', 1, 2)},
		{"zero-length packet", append(seq(opt, conn), 0, 0, 0, 0)},
		{"huge length", append(seq(opt, conn), 0xff, 0xff, 0xff, 0xff, 'B')},
		{"short CONNECT", seq(opt) /* family 4 without port */},
		{"empty MAIL and HELO", append(seq(opt, conn), append(pkt('H'), pkt('M')...)...)},
		{"macro without data", append(seq(opt), pkt('D')...)},
		{"header without value", append(seq(opt, conn, mail), append(pkt('L', "From"), pkt('N')...)...)},
	}
	tests[13].data = append(tests[13].data, pkt('C', cstr("h"), "4")...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", r.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tt.data); err != nil {
				t.Fatal(err)
			}
			c.(*net.TCPConn).CloseWrite() //nolint:errcheck
			codes, ended, err := readReplies(c, 20*time.Second)
			if err != nil || !ended {
				t.Fatalf("replies %q, ended=%v, err=%v", codes, ended, err)
			}
			for _, code := range codes {
				if !strings.ContainsRune("Ocahitmqy", rune(code)) {
					t.Errorf("unexpected reply code %q in %q", code, codes)
				}
			}
		})
	}
	if s := libLog.String() + r.logs.String(); strings.Contains(s, "panic") {
		t.Errorf("panic logged:\n%s", testmilter.Tail(s, 4000))
	}
	r.sendOne(t, stdMessage("sender.test"))
}

// 10,000 sessions, each dying at a random point (between packets or in the
// middle of one, DKIM-signed messages included), some through many
// concurrent connections: afterwards goroutines and fds are back to the
// baseline and the daemon serves on.
func TestRobustNoLeak10000(t *testing.T) {
	r := newRig(t, signedZone(t), rigOptions{})
	r.sendOne(t, stdMessage("sender.test")) // warm the resolver cache and pools
	baseG := runtime.NumGoroutine()
	baseFD := openFDs(t)
	const sessions = 10000
	const workers = 8
	stages := rawStages(t)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 10000))
			for next.Add(1) <= sessions {
				if err := dieAtRandom(r.addr, stages, rng); err != nil {
					errs <- err
					return
				}
			}
		}(uint64(w))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	settleSessions(t, r)
	settle(t, baseG, baseFD, 5)
	r.sendOne(t, stdMessage("sender.test"))
}

// dieAtRandom plays a message up to a random byte and then closes, reads
// nothing more, or (one time in ten) plays it whole.
func dieAtRandom(addr string, stages [][]byte, rng *rand.Rand) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	var all []byte
	for _, s := range stages {
		all = append(all, s...)
	}
	cut := len(all)
	if rng.IntN(10) != 0 {
		cut = rng.IntN(len(all))
	}
	if _, err := c.Write(all[:cut]); err != nil {
		return nil // the server closed first: fine
	}
	switch rng.IntN(3) {
	case 0: // vanish at once
	case 1: // wait for a reply or two
		readReplies(c, 5*time.Millisecond) //nolint:errcheck
	case 2: // half-close and read to the end
		c.(*net.TCPConn).CloseWrite()  //nolint:errcheck
		readReplies(c, 10*time.Second) //nolint:errcheck
	}
	return nil
}

// The signed fixture the leak tests play really verifies (so a message cut
// short really leaves a DKIM verification waiting for its body).
func TestRobustSignedFixturePasses(t *testing.T) {
	r := newRig(t, signedZone(t), rigOptions{})
	fields, body := signedMessage(t)
	o := r.sendOne(t, message{ip: "192.0.2.1", helo: "mx.example.org", from: "alice@example.org", headers: fields, body: []string{body}})
	if ar := o.AR(); !strings.Contains(ar, "dkim=pass") || !strings.Contains(ar, "header.s=rsa2048") {
		t.Errorf("A-R:\n%s", ar)
	}
}

// flakyListener fails its first Accepts the way a process out of file
// descriptors does (EMFILE), then accepts normally.
type flakyListener struct {
	net.Listener
	fails atomic.Int32
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	return l.Listener.Accept()
}

// Accept errors other than a closed listener (EMFILE, ECONNABORTED) do not
// stop the server: go-milter's Serve would return on the first one.
func TestRobustAcceptErrors(t *testing.T) {
	r := newRig(t, robustZone, rigOptions{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &flakyListener{Listener: ln}
	fl.fails.Store(5)
	done := make(chan error, 1)
	go func() { done <- r.srv.Serve(fl) }()
	r2 := *r
	r2.addr = ln.Addr().String()
	r2.sendOne(t, stdMessage("sender.test"))
	if n := fl.fails.Load(); n >= 0 {
		t.Errorf("only %d of 5 failures seen", 5-n)
	}
	select {
	case err := <-done:
		t.Fatalf("Serve returned: %v", err)
	default:
	}
	// Shutdown stops this listener too; Serve then returns nil.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}
