package dkimverify

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/emersion/go-msgauth/dkim"
)

// Differential tests against go-msgauth (a test-only dependency): messages
// signed by its signer must verify with ours, break with ours when a body or
// signed header byte changes, and get the same pass/no-pass verdict from
// its verifier as from ours.

type diffEnv struct {
	r       *resolver.Resolver
	signers map[string]crypto.Signer // by selector: rsa2048, ed25519
	records map[string]string        // key records by DNS name, for go-msgauth
}

func newDiffEnv(t testing.TB) *diffEnv {
	t.Helper()
	_, r := newDNS(t, fixtureZone(t), resolver.Config{CacheSize: 100})
	rk := readRSAKey(t, "keys/rsa2048.pem")
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(readFile(t, "keys/ed25519.key"))))
	if err != nil {
		t.Fatal(err)
	}
	ek := ed25519.NewKeyFromSeed(seed)
	spki, err := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return &diffEnv{
		r:       r,
		signers: map[string]crypto.Signer{"rsa2048": rk, "ed25519": ek},
		records: map[string]string{
			"rsa2048._domainkey.example.org": "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(spki),
			"ed25519._domainkey.example.org": "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(ek.Public().(ed25519.PublicKey)),
		},
	}
}

var canons = []dkim.Canonicalization{dkim.CanonicalizationSimple, dkim.CanonicalizationRelaxed}

// sign signs header+body with go-msgauth and returns the signed message.
func (e *diffEnv) sign(t testing.TB, header, body, sel string, hc, bc dkim.Canonicalization) []byte {
	t.Helper()
	var out bytes.Buffer
	err := dkim.Sign(&out, strings.NewReader(header+"\r\n"+body), &dkim.SignOptions{
		Domain: "example.org", Selector: sel, Signer: e.signers[sel],
		HeaderCanonicalization: hc, BodyCanonicalization: bc,
		// Reply-To is absent (oversigned), X-Dup appears twice and is
		// signed three times.
		HeaderKeys: []string{"From", "To", "Subject", "X-Dup", "X-Dup", "X-Dup", "Reply-To"},
	})
	if err != nil {
		t.Fatalf("go-msgauth sign: %v", err)
	}
	return out.Bytes()
}

// ours verifies msg with this package, the body written in pieces of the
// given sizes (cycled; the whole body at once if none).
func (e *diffEnv) ours(t testing.TB, msg []byte, chunks []int) Result {
	t.Helper()
	i := bytes.Index(msg, []byte("\r\n\r\n"))
	if i < 0 {
		t.Fatalf("no end of header in %q", msg)
	}
	header, body := msg[:i+4], msg[i+4:]
	v := Start(context.Background(), e.r, header, nil)
	for n := 0; len(body) > 0; n++ {
		k := len(body)
		if len(chunks) > 0 {
			k = min(max(chunks[n%len(chunks)], 1), len(body))
		}
		_, _ = v.Write(body[:k])
		body = body[k:]
	}
	rs := v.Results()
	switch len(rs) {
	case 0:
		return Result{Status: StatusNone} // a mutation broke the field's name
	case 1:
		return rs[0]
	}
	t.Fatalf("%d results, want 1", len(rs))
	return Result{}
}

// theirs verifies msg with go-msgauth; nil means pass.
func (e *diffEnv) theirs(t testing.TB, msg []byte) error {
	t.Helper()
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) {
			if rec, ok := e.records[strings.TrimSuffix(name, ".")]; ok {
				return []string{rec}, nil
			}
			return nil, fmt.Errorf("no record for %s", name)
		},
	})
	if err != nil {
		return err
	}
	switch len(vs) {
	case 0:
		return fmt.Errorf("no signature")
	case 1:
	default:
		t.Fatalf("go-msgauth: %d verifications", len(vs))
	}
	return vs[0].Err
}

// randomHeader makes the fields to sign, with whitespace and folding that
// relaxed header canonicalisation must undo.
func randomHeader(r *rand.Rand) string {
	ws := []string{" ", "  ", "\t", " \t ", "\r\n\t", "\r\n  ", ""}
	w := func() string { return ws[r.IntN(len(ws))] }
	words := []string{"hello", "DKIM", "test", "ÄÖ", "a:b", "x"}
	var subj strings.Builder
	subj.WriteString("subj")
	for range 1 + r.IntN(6) {
		subj.WriteString(w())
		subj.WriteString(words[r.IntN(len(words))])
	}
	names := []string{"Subject", "subject", "SUBJECT", "Subject "}
	h := "From:" + w() + "Alice <alice@example.org>" + w() + "\r\n" +
		"X-Dup: one\r\n" +
		"To: bob@example.net\r\n" +
		names[r.IntN(len(names))] + ":" + " " + subj.String() + w() + "\r\n" +
		"X-Dup:" + w() + "two\r\n" +
		"X-Unsigned: free\r\n"
	return h
}

// randomDiffBody is randomBody without bare CR (go-msgauth's relaxed
// canonicaliser treats a lone CR as a line break, RFC 6376 and we do not).
func randomDiffBody(r *rand.Rand) string {
	pieces := []string{"a", "b", "word", " ", "  ", "\t", " \t ", "\r\n", "\r\n\r\n", "\n", "xyz", "\r\n \r\n", "\n\n"}
	var b strings.Builder
	for range r.IntN(40) {
		b.WriteString(pieces[r.IntN(len(pieces))])
	}
	return b.String()
}

// flipLetter changes one ASCII letter of s[from:to] (there must be one),
// chosen by r.
func flipLetter(r *rand.Rand, s []byte, from, to int) []byte {
	var at []int
	for i := from; i < to; i++ {
		if isAlpha(s[i]) {
			at = append(at, i)
		}
	}
	out := bytes.Clone(s)
	i := at[r.IntN(len(at))]
	out[i] ^= 0x01 // another letter of the same case, e.g. a<->b
	if !isAlpha(out[i]) {
		out[i] = 'q'
	}
	return out
}

func randomChunks(r *rand.Rand) []int {
	if r.IntN(3) == 0 {
		return nil
	}
	c := make([]int, 1+r.IntN(4))
	for i := range c {
		c[i] = 1 + r.IntN(50)
	}
	return c
}

func TestDifferentialGoMsgauth(t *testing.T) {
	e := newDiffEnv(t)
	r := rand.New(rand.NewPCG(9, 4))
	for n := range 200 {
		header := randomHeader(r)
		body := randomDiffBody(r) + "zz" + randomDiffBody(r)
		sel := []string{"rsa2048", "ed25519"}[n%2]
		hc, bc := canons[n/2%2], canons[n/4%2]
		name := fmt.Sprintf("%d/%s/%s/%s", n, sel, hc, bc)
		msg := e.sign(t, header, body, sel, hc, bc)
		end := bytes.Index(msg, []byte("\r\n\r\n")) + 4
		chunks := randomChunks(r)

		if got := e.ours(t, msg, chunks); got.Status != StatusPass {
			t.Fatalf("%s: ours %s (%s) %v for a go-msgauth signature\n%q", name, got.Status, got.Reason, got.Err, msg)
		}
		if err := e.theirs(t, msg); err != nil {
			t.Fatalf("%s: go-msgauth fails its own signature: %v", name, err)
		}

		// A changed body letter: body hash mismatch for both.
		bad := flipLetter(r, msg, end, len(msg))
		if got := e.ours(t, bad, chunks); got.Status != StatusFail || got.Reason != "body hash mismatch" {
			t.Errorf("%s: body changed: ours %s (%s)", name, got.Status, got.Reason)
		}
		if e.theirs(t, bad) == nil {
			t.Errorf("%s: body changed: go-msgauth passes", name)
		}

		// A changed letter in the signed Subject value.
		subj := bytes.Index(bytes.ToLower(msg), []byte("\r\nsubject"))
		colon := subj + bytes.IndexByte(msg[subj:], ':')
		lineEnd := colon + bytes.Index(msg[colon:], []byte("\r\nX-Dup"))
		bad = flipLetter(r, msg, colon, lineEnd)
		if got := e.ours(t, bad, chunks); got.Status != StatusFail || got.Reason != "signature mismatch" {
			t.Errorf("%s: Subject changed: ours %s (%s)", name, got.Status, got.Reason)
		}
		if e.theirs(t, bad) == nil {
			t.Errorf("%s: Subject changed: go-msgauth passes", name)
		}

		// Whitespace or a line end inserted somewhere (not after a CR):
		// canonicalisation may or may not absorb it; both must agree.
		ins := []string{" ", "\t", "\r\n", "\n", "  "}[r.IntN(5)]
		at := 1 + r.IntN(len(msg)-1)
		for msg[at-1] == '\r' {
			at--
		}
		if at < end-2 && (ins == "\n" || ins == "\r\n") {
			ins = " " // a new line in the header would make a new field
		}
		mut := append(append(bytes.Clone(msg[:at]), ins...), msg[at:]...)
		if !bytes.Contains(mut, []byte("\r\n\r\n")) {
			continue
		}
		ours, theirs := e.ours(t, mut, chunks), e.theirs(t, mut)
		if (ours.Status == StatusPass) != (theirs == nil) {
			t.Errorf("%s: %q inserted at %d: ours %s (%s), go-msgauth %v\n%q", name, ins, at, ours.Status, ours.Reason, theirs, mut)
		}
	}
}

// FuzzDifferentialGoMsgauth signs a fuzzed Subject and body with go-msgauth
// (key and canonicalisations chosen by mode) and checks that ours passes,
// as go-msgauth does, whatever the chunking.
func FuzzDifferentialGoMsgauth(f *testing.F) {
	e := newDiffEnv(f)
	f.Add("hello  world", "Hi \t there\r\n\r\n", uint8(0), uint8(3))
	f.Add("", "", uint8(5), uint8(1))
	f.Add(" \t", "\n\n a\nb  \n\r\n", uint8(6), uint8(0))
	f.Fuzz(func(t *testing.T, subject, body string, mode, chunk uint8) {
		subject = strings.Map(func(r rune) rune {
			if r == '\r' || r == '\n' {
				return ' '
			}
			return r
		}, subject)
		// No lone CR (see randomDiffBody).
		var b strings.Builder
		for i := 0; i < len(body); i++ {
			if body[i] == '\r' && (i+1 == len(body) || body[i+1] != '\n') {
				b.WriteByte('x')
				continue
			}
			b.WriteByte(body[i])
		}
		body = b.String()
		sel := []string{"rsa2048", "ed25519"}[mode%2]
		hc, bc := canons[mode/2%2], canons[mode/4%2]
		header := "From: a@example.org\r\nX-Dup: 1\r\nTo: b@example.net\r\nSubject:" + subject + "\r\n"
		msg := e.sign(t, header, body, sel, hc, bc)
		var chunks []int
		if chunk > 0 {
			chunks = []int{int(chunk)}
		}
		got := e.ours(t, msg, chunks)
		theirs := e.theirs(t, msg)
		if got.Status != StatusPass || theirs != nil {
			t.Fatalf("ours %s (%s) %v, go-msgauth %v\n%q", got.Status, got.Reason, got.Err, theirs, msg)
		}
	})
}
