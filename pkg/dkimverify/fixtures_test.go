package dkimverify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/miekg/dns"
)

// want is the expected result of one signature; empty fields are not checked
// except Status and Reason.
type want struct {
	status  Status
	reason  string
	domain  string
	sel     string
	alg     string
	keyBits int
	err     error // checked with errors.Is when set
}

func check(t *testing.T, got []Result, wants []want) {
	t.Helper()
	if len(got) != len(wants) {
		t.Fatalf("got %d results, want %d: %+v", len(got), len(wants), got)
	}
	for i, w := range wants {
		g := got[i]
		if g.Status != w.status || g.Reason != w.reason {
			t.Errorf("signature %d: got %s (%s) err=%v, want %s (%s)", i, g.Status, g.Reason, g.Err, w.status, w.reason)
		}
		if w.domain != "" && g.Domain != w.domain {
			t.Errorf("signature %d: domain %q, want %q", i, g.Domain, w.domain)
		}
		if w.sel != "" && g.Selector != w.sel {
			t.Errorf("signature %d: selector %q, want %q", i, g.Selector, w.sel)
		}
		if w.alg != "" && g.Algorithm != w.alg {
			t.Errorf("signature %d: algorithm %q, want %q", i, g.Algorithm, w.alg)
		}
		if w.keyBits != 0 && g.KeyBits != w.keyBits {
			t.Errorf("signature %d: key bits %d, want %d", i, g.KeyBits, w.keyBits)
		}
		if w.err != nil && !errors.Is(g.Err, w.err) {
			t.Errorf("signature %d: err %v, want %v", i, g.Err, w.err)
		}
		if g.Status == StatusPass && g.Err != nil {
			t.Errorf("signature %d: pass with err %v", i, g.Err)
		}
		if g.Status != StatusPass && g.Err == nil {
			t.Errorf("signature %d: %s without err", i, g.Status)
		}
		if len(g.BPrefix) < 8 {
			t.Errorf("signature %d: BPrefix %q shorter than 8", i, g.BPrefix)
		}
	}
}

func pass(domain, sel, alg string, bits int) want {
	return want{status: StatusPass, domain: domain, sel: sel, alg: alg, keyBits: bits}
}

// Fixtures signed by dkimpy (testdata/gen.py) and the RFC examples, keys
// served by internal/dnstest through internal/resolver.
func TestFixtures(t *testing.T) {
	_, r := newDNS(t, fixtureZone(t), resolver.Config{})
	rsa := "rsa-sha256"
	ed := "ed25519-sha256"
	org := "example.org"
	tests := []struct {
		file string
		opts *Options
		want []want
	}{
		{"rsa1024-relaxed.eml", nil, []want{pass(org, "rsa1024", rsa, 1024)}},
		{"rsa2048-relaxed.eml", nil, []want{pass(org, "rsa2048", rsa, 2048)}},
		{"rsa4096-relaxed.eml", nil, []want{pass(org, "rsa4096", rsa, 4096)}},
		{"ed25519-relaxed.eml", nil, []want{pass(org, "ed25519", ed, 0)}},
		{"rsa2048-simple.eml", nil, []want{pass(org, "rsa2048", rsa, 2048)}},
		{"rsa2048-relaxed-simple.eml", nil, []want{pass(org, "rsa2048", rsa, 2048)}},
		{"large-body.eml", nil, []want{pass(org, "rsa2048", rsa, 2048)}},
		{"oversigned.eml", nil, []want{pass(org, "rsa2048", rsa, 2048)}},
		{"oversigned-added-subject.eml", nil, []want{{status: StatusFail, reason: "signature mismatch"}}},
		{"two-signatures-one-broken.eml", nil, []want{
			{status: StatusFail, reason: "signature mismatch", domain: "esp.example.net", sel: "esp", keyBits: 1024},
			pass(org, "ed25519", ed, 0),
		}},
		// RFC 8301 §3.1 and §3.2.
		{"rsa-sha1.eml", nil, []want{{status: StatusPolicy, reason: "rsa-sha1 not accepted", alg: "rsa-sha1", err: ErrSHA1}}},
		{"rsa512.eml", nil, []want{{status: StatusPolicy, reason: "key too small (512 bits)", keyBits: 512, err: ErrKeyTooSmall}}},
		{"rsa1024-relaxed.eml", &Options{MinRSABits: 2048}, []want{{status: StatusPolicy, reason: "key too small (1024 bits)", err: ErrKeyTooSmall}}},
		{"rsa2048-relaxed.eml", &Options{MinRSABits: 2048}, []want{pass(org, "rsa2048", rsa, 2048)}},
		// l= covering the whole body verifies (RFC 6376 §3.5, §8.2); see
		// TestBodyLengthTag for the rest.
		{"length-tag.eml", nil, []want{pass(org, "rsa2048", rsa, 2048)}},
		// RFC 6376 Appendix A.2 with the key of Appendix C.
		{"rfc6376-a2.eml", nil, []want{pass("example.com", "brisbane", rsa, 1024)}},
		// RFC 8463 Appendix A.3 with the keys of Appendix A.2.
		{"rfc8463-a3.eml", nil, []want{
			pass("football.example.com", "brisbane", ed, 0),
			pass("football.example.com", "test", rsa, 1024),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			check(t, verify(t, r, readFile(t, tt.file), tt.opts, 0), tt.want)
		})
	}
}

// The cap on verified signatures reports the others instead of dropping them.
func TestTooManySignatures(t *testing.T) {
	srv, r := newDNS(t, fixtureZone(t), resolver.Config{})
	msg := readFile(t, "six-signatures.eml")
	p := want{status: StatusPass}
	capped := want{status: StatusPolicy, reason: "not verified: too many signatures", err: ErrTooManySignatures}

	check(t, verify(t, r, msg, nil, 0), []want{p, p, p, p, p, capped})
	before := srv.Queries()
	check(t, verify(t, r, msg, &Options{MaxSignatures: 2}, 0), []want{p, p, capped, capped, capped, capped})
	// Signatures over the cap cost no DNS: 2 keys looked up, not 6.
	if q := srv.Queries() - before; q != 2 {
		t.Errorf("%d DNS queries with MaxSignatures 2, want 2", q)
	}
}

func TestBodyAltered(t *testing.T) {
	_, r := newDNS(t, fixtureZone(t), resolver.Config{})
	for _, file := range []string{"rsa2048-relaxed.eml", "rsa2048-simple.eml", "ed25519-relaxed.eml", "rfc8463-a3.eml"} {
		t.Run(file, func(t *testing.T) {
			msg := bytes.Replace(readFile(t, file), []byte("Are you hungry"), []byte("Are you thirsty"), 1)
			msg = bytes.Replace(msg, []byte("Hello Bob"), []byte("Hello Eve"), 1)
			got := verify(t, r, msg, nil, 0)
			for i := range got {
				if got[i].Status != StatusFail || got[i].Reason != "body hash mismatch" {
					t.Errorf("signature %d: %s (%s), want fail (body hash mismatch)", i, got[i].Status, got[i].Reason)
				}
			}
		})
	}
}

// The body cut at arbitrary places gives the same result as in one piece.
func TestChunking(t *testing.T) {
	_, r := newDNS(t, fixtureZone(t), resolver.Config{})
	for _, file := range []string{"large-body.eml", "rsa2048-simple.eml", "ed25519-relaxed.eml", "two-signatures-one-broken.eml"} {
		msg := readFile(t, file)
		whole := verify(t, r, msg, nil, 0)
		for _, chunk := range []int{1, 2, 3, 7, 1000, 4096, 65535} {
			got := verify(t, r, msg, nil, chunk)
			if len(got) != len(whole) {
				t.Fatalf("%s chunk %d: %d results, want %d", file, chunk, len(got), len(whole))
			}
			for i := range got {
				if got[i].Status != whole[i].Status || got[i].Reason != whole[i].Reason {
					t.Errorf("%s chunk %d sig %d: %s (%s), whole body gives %s (%s)", file, chunk, i,
						got[i].Status, got[i].Reason, whole[i].Status, whole[i].Reason)
				}
			}
		}
		if whole[len(whole)-1].Status != StatusPass {
			t.Errorf("%s: last signature %s, want pass", file, whole[len(whole)-1].Status)
		}
	}
}

// Key record outcomes for one signature (selector "other" of example.org).
func TestKeyRecords(t *testing.T) {
	msg := readFile(t, "other-selector.eml")
	zone := string(readFile(t, "keys.zone"))
	good := ""
	for _, l := range strings.Split(zone, "\n") {
		if strings.HasPrefix(l, "other._domainkey.example.org.") {
			good = l
		}
	}
	if good == "" {
		t.Fatal("no record for selector other in keys.zone")
	}
	withOther := func(lines ...string) string {
		return strings.Replace(zone, good, strings.Join(lines, "\n"), 1)
	}
	const name = "other._domainkey.example.org. 300 IN "
	// other is the key record of another fixture selector, published at
	// selector "other".
	other := func(sel string) string {
		for _, l := range strings.Split(zone, "\n") {
			if strings.HasPrefix(l, sel+"._domainkey.example.org. ") {
				return name + l[strings.Index(l, "TXT "):]
			}
		}
		t.Fatalf("no record for selector %s", sel)
		return ""
	}
	junk := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf(`%sTXT "token-%d"`, name, i))
		}
		return out
	}
	ed := `"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="`
	tests := []struct {
		name  string
		zone  string
		rcode int // if set, the server answers this for the key name
		want  want
	}{
		{"published", zone, 0, want{status: StatusPass, keyBits: 2048}},
		{"revoked", withOther(name + `TXT "v=DKIM1; p="`), 0, want{status: StatusPermError, reason: "key revoked"}},
		{"NXDOMAIN", withOther(), 0, want{status: StatusPermError, reason: "no key"}},
		{"NODATA", withOther(name + "A 192.0.2.1"), 0, want{status: StatusPermError, reason: "no key"}},
		{"SERVFAIL", zone, dns.RcodeServerFailure, want{status: StatusTempError, reason: "key DNS lookup failed: DNS server failure"}},
		{"REFUSED", zone, dns.RcodeRefused, want{status: StatusTempError, reason: "key DNS lookup failed: DNS server refused the query"}},
		{"malformed base64", withOther(name + `TXT "v=DKIM1; p=not*base64"`), 0, want{status: StatusPermError, reason: "malformed key"}},
		{"not a key", withOther(name + `TXT "v=DKIM1; p=AAAA"`), 0, want{status: StatusPermError, reason: "malformed key"}},
		// RFC 6376 §3.6.2.2, §6.1.2: only TXT records that parse as key
		// records count; two or three valid ones are tried in turn.
		{"verification token beside the key", withOther(name+`TXT "google-site-verification=abc123"`, good), 0, want{status: StatusPass, keyBits: 2048}},
		{"SPF record beside the key", withOther(good, name+`TXT "v=spf1 -all"`), 0, want{status: StatusPass, keyBits: 2048}},
		{"revoked record beside the key", withOther(good, name+`TXT "v=DKIM1; p="`), 0, want{status: StatusPass, keyBits: 2048}},
		{"another valid key beside the right one", withOther(other("rsa4096"), good), 0, want{status: StatusPass, keyBits: 2048}},
		{"an Ed25519 key beside the RSA key", withOther(name+"TXT "+ed, good), 0, want{status: StatusPass, keyBits: 2048}},
		{"two valid keys, neither signed it", withOther(other("rsa4096"), other("rsa1024")), 0, want{status: StatusFail, reason: "signature mismatch"}},
		{"only TXT records that are not keys", withOther(name+`TXT "hello"`, name+`TXT "v=spf1 -all"`), 0, want{status: StatusPermError, reason: "malformed key"}},
		{"four valid key records", withOther(good, other("rsa4096"), other("rsa1024"), other("rsa512")), 0, want{status: StatusPermError, reason: "several key records"}},
		{"eleven TXT records", withOther(append([]string{good}, junk(10)...)...), 0, want{status: StatusPermError, reason: "several key records"}},
		{"ed25519 key for rsa-sha256", withOther(name + "TXT " + ed), 0, want{status: StatusPermError, reason: "key type does not match a="}},
		{"h=sha1 only", withOther(strings.Replace(good, "v=DKIM1; k=rsa;", "v=DKIM1; k=rsa; h=sha1;", 1)), 0, want{status: StatusPermError, reason: "hash not allowed by key"}},
		{"s= not email", withOther(strings.Replace(good, "v=DKIM1; k=rsa;", "v=DKIM1; k=rsa; s=tlsrpt;", 1)), 0, want{status: StatusPermError, reason: "key not for email"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, r := newDNS(t, tt.zone, resolver.Config{Attempts: 1})
			if tt.rcode != 0 {
				srv.Fail("other._domainkey.example.org", tt.rcode)
			}
			res := verify(t, r, msg, nil, 0)
			check(t, res, []want{tt.want})
			// The sentinels callers test for: no record, DNS trouble.
			if sentinel := map[string]error{"NXDOMAIN": ErrNoKey, "NODATA": ErrNoKey, "SERVFAIL": ErrTemporary, "REFUSED": ErrTemporary}[tt.name]; sentinel != nil && (len(res) != 1 || !errors.Is(res[0].Err, sentinel)) {
				t.Errorf("err %v is not %v", res, sentinel)
			}
		})
	}
}

// A key server that never answers gives temperror once the resolver gives up.
func TestKeyTimeout(t *testing.T) {
	srv, r := newDNS(t, fixtureZone(t), resolver.Config{Timeout: 200 * time.Millisecond, Attempts: 1})
	srv.Drop("other._domainkey.example.org")
	check(t, verify(t, r, readFile(t, "other-selector.eml"), nil, 65535),
		[]want{{status: StatusTempError, reason: "key DNS lookup failed: DNS timeout"}})
}

// Abort cancels a key lookup that would otherwise wait for a long timeout.
func TestAbort(t *testing.T) {
	srv, r := newDNS(t, fixtureZone(t), resolver.Config{Timeout: time.Hour, Attempts: 1})
	srv.Drop("other._domainkey.example.org")
	header, body := splitMessage(t, readFile(t, "other-selector.eml"))
	v := Start(context.Background(), r, header, nil)
	if len(v.keys) != 1 {
		t.Fatalf("%d key lookups started, want 1", len(v.keys))
	}
	v.Abort()
	<-v.keys[0].done // would wait an hour if Abort did not cancel the lookup
	if n, err := v.Write(body); n != len(body) || err != nil {
		t.Errorf("Write after Abort = %d, %v", n, err)
	}
	if err := v.keys[0].err; err == nil || !strings.Contains(err.Error(), "cancel") || v.keys[0].notFound {
		t.Errorf("key lookup after Abort: %v, want a cancellation error", err)
	}
	check(t, v.Results(), []want{{status: StatusTempError, reason: "verification aborted", err: ErrAborted}})
}

// The message's context is the one the key lookups run with.
func TestContextCancelled(t *testing.T) {
	srv, r := newDNS(t, fixtureZone(t), resolver.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	header, body := splitMessage(t, readFile(t, "rsa2048-relaxed.eml"))
	v := Start(ctx, r, header, nil)
	_, _ = v.Write(body)
	check(t, v.Results(), []want{{status: StatusTempError, reason: "key DNS lookup failed"}})
	if q := srv.Queries(); q != 0 {
		t.Errorf("%d queries sent with a cancelled context", q)
	}
}

func TestUnsigned(t *testing.T) {
	srv, r := newDNS(t, fixtureZone(t), resolver.Config{})
	msg := readFile(t, "rsa2048-relaxed.eml")
	msg = msg[bytes.Index(msg, []byte("Received:")):] // drop the signature
	if got := verify(t, r, msg, nil, 10); got != nil {
		t.Errorf("Results = %+v, want nil", got)
	}
	if q := srv.Queries(); q != 0 {
		t.Errorf("%d DNS queries for an unsigned message", q)
	}
}

// RFC 6376 §3.5 x= and t=, against Options.Now with Options.ClockDrift.
func TestTimestamps(t *testing.T) {
	_, r := newDNS(t, fixtureZone(t), resolver.Config{})
	y2100 := time.Unix(4102444800, 0)
	at := func(tm time.Time, drift time.Duration) *Options {
		return &Options{Now: func() time.Time { return tm }, ClockDrift: drift}
	}
	expired := want{status: StatusPermError, reason: "signature expired", err: ErrExpired}
	future := want{status: StatusPermError, reason: "signature timestamp in the future", err: ErrFutureTimestamp}
	ok := want{status: StatusPass}
	tests := []struct {
		name string
		file string
		opts *Options
		want want
	}{
		{"x=2100 now", "expires-2100.eml", atT0plus(time.Hour), ok},
		{"x=2100 within drift", "expires-2100.eml", at(y2100.Add(299*time.Second), 0), ok},
		// The real clock would pass these: Options.Now wins.
		{"x=2100 past drift", "expires-2100.eml", at(y2100.Add(301*time.Second), 0), expired},
		{"x=2100 no drift", "expires-2100.eml", at(y2100.Add(time.Second), -1), expired},
		{"x=t0+1h, 2h later", "expires-1h.eml", atT0plus(2 * time.Hour), expired},
		{"t= 100s ahead", "rsa2048-relaxed.eml", atT0plus(-100 * time.Second), ok},
		{"t= 10m ahead", "rsa2048-relaxed.eml", atT0plus(-10 * time.Minute), future},
		{"t= 100s ahead, no drift", "rsa2048-relaxed.eml", at(t0.Add(-100*time.Second), -1), future},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check(t, verify(t, r, readFile(t, tt.file), tt.opts, 0), []want{tt.want})
		})
	}
}

// Our clock is the only one: a signature whose x= is long past on the real
// clock passes when Options.Now says it is still valid (go-msgauth, used
// before, checked x= against the real clock itself).
func TestExpiryOwnClock(t *testing.T) {
	_, r := newDNS(t, fixtureZone(t), resolver.Config{})
	// x = t0+1h, long past on the real clock; our clock says 30 min after t0.
	check(t, verify(t, r, readFile(t, "expires-1h.eml"), atT0plus(30*time.Minute), 0), []want{{status: StatusPass}})
	// And within the drift after x=.
	check(t, verify(t, r, readFile(t, "expires-1h.eml"), atT0plus(time.Hour+299*time.Second), 0), []want{{status: StatusPass}})
}

func TestBPrefixes(t *testing.T) {
	tests := []struct {
		in   []string
		want []string
	}{
		{[]string{"abcdefghij"}, []string{"abcdefgh"}},
		{[]string{"short"}, []string{"short"}},
		{[]string{"abcdefghXY", "abcdefghZZ"}, []string{"abcdefghX", "abcdefghZ"}},
		{[]string{"abcdefghijk1", "abcdefghijk2", "zzzzzzzzzz"}, []string{"abcdefghijk1", "abcdefghijk2", "zzzzzzzz"}},
		{[]string{"abcdefghij", "abcdefghij"}, []string{"abcdefgh", "abcdefgh"}}, // identical: nothing to tell apart
		{[]string{"", "abc"}, []string{"", "abc"}},
		{[]string{"abc", "abcdefghijk"}, []string{"abc", "abcdefgh"}},
		{[]string{"abcdefghijk", "abcdefghijk", "abcdefghijX"}, []string{"abcdefghijk", "abcdefghijk", "abcdefghijX"}},
		// Past maxBPrefix the prefix stops growing (issue 16).
		{[]string{strings.Repeat("A", 99) + "B", strings.Repeat("A", 99) + "C"}, []string{strings.Repeat("A", 64), strings.Repeat("A", 64)}},
		{[]string{strings.Repeat("A", 63) + "B", strings.Repeat("A", 99)}, []string{strings.Repeat("A", 63) + "B", strings.Repeat("A", 64)}},
	}
	for _, tt := range tests {
		got := bPrefixes(tt.in)
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("bPrefixes(%q) = %q, want %q", tt.in, got, tt.want)
				break
			}
		}
	}
}

// bPrefixes gives what the obvious quadratic search gives, for random sets
// of values drawn from a small alphabet (many shared prefixes, duplicates).
func TestBPrefixesNaive(t *testing.T) {
	naive := func(bs []string) []string {
		out := make([]string, len(bs))
		for i, b := range bs {
			n := min(8, len(b))
			for n < len(b) && n < maxBPrefix {
				clash := false
				for j, o := range bs {
					clash = clash || (j != i && o != b && strings.HasPrefix(o, b[:n]))
				}
				if !clash {
					break
				}
				n++
			}
			out[i] = b[:n]
		}
		return out
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		bs := make([]string, 1+rng.IntN(6))
		for i := range bs {
			b := make([]byte, rng.IntN(80))
			for j := range b {
				b[j] = "AB"[rng.IntN(2)]
				if rng.IntN(10) > 0 {
					b[j] = 'A'
				}
			}
			bs[i] = string(b)
		}
		if got, want := bPrefixes(bs), naive(bs); !slices.Equal(got, want) {
			t.Fatalf("bPrefixes(%q) = %q, want %q", bs, got, want)
		}
	}
}

// Malformed input never panics and gives a per-signature error.
func TestMalformed(t *testing.T) {
	_, r := newDNS(t, fixtureZone(t), resolver.Config{})
	tests := []struct {
		name   string
		header string
		want   want
	}{
		{"no tags", "DKIM-Signature: garbage\r\nFrom: a@example.org\r\n\r\n", want{status: StatusPermError, reason: "malformed signature"}},
		{"missing b", "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=rsa2048; h=from; bh=AAAA\r\nFrom: a@example.org\r\n\r\n", want{status: StatusPermError, reason: "missing required tag"}},
		{"v=2", "DKIM-Signature: v=2; a=rsa-sha256; d=example.org; s=rsa2048; h=from; bh=AAAA; b=AAAAAAAAAAAA\r\nFrom: a@example.org\r\n\r\n", want{status: StatusPermError, reason: "bad signature version"}},
		{"From unsigned", "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=rsa2048; h=to; bh=AAAA; b=AAAAAAAAAAAA\r\nFrom: a@example.org\r\n\r\n", want{status: StatusPermError, reason: "From not signed"}},
		{"i= outside d=", "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; i=a@example.com; s=rsa2048; h=from; bh=AAAA; b=AAAAAAAAAAAA\r\nFrom: a@example.org\r\n\r\n", want{status: StatusPermError, reason: "i= not within d="}},
		{"bad x=", "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=rsa2048; h=from; x=soon; bh=AAAA; b=AAAAAAAAAAAA\r\nFrom: a@example.org\r\n\r\n", want{status: StatusPermError, reason: "malformed t= or x=", err: ErrBadTimestamps}},
		{"x before t", "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=rsa2048; h=from; t=4102444800; x=4102444000; bh=AAAA; b=AAAAAAAAAAAA\r\nFrom: a@example.org\r\n\r\n", want{status: StatusPermError, reason: "x= before t=", err: ErrBadTimestamps}},
		{"unknown algorithm", "DKIM-Signature: v=1; a=rsa-md5; d=example.org; s=rsa2048; h=from; bh=AAAA; b=AAAAAAAAAAAA\r\nFrom: a@example.org\r\n\r\n", want{status: StatusPermError, reason: "unsupported signature parameter"}},
		{"duplicate tag", "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; d=example.org; s=rsa2048; h=from; bh=AAAA; b=AAAAAAAAAAAA\r\nFrom: a@example.org\r\n\r\n", want{status: StatusPermError, reason: "malformed signature"}},
		{"missing v", "DKIM-Signature: a=rsa-sha256; d=example.org; s=rsa2048; h=from; bh=AAAA; b=AAAAAAAAAAAA\r\nFrom: a@example.org\r\n\r\n", want{status: StatusPermError, reason: "missing required tag"}},
		{"c=fancy", "DKIM-Signature: v=1; a=rsa-sha256; c=fancy/simple; d=example.org; s=rsa2048; h=from; bh=AAAA; b=AAAAAAAAAAAA\r\nFrom: a@example.org\r\n\r\n", want{status: StatusPermError, reason: "unsupported signature parameter"}},
		{"q=http", "DKIM-Signature: v=1; a=rsa-sha256; q=http; d=example.org; s=rsa2048; h=from; bh=AAAA; b=AAAAAAAAAAAA\r\nFrom: a@example.org\r\n\r\n", want{status: StatusPermError, reason: "unsupported signature parameter"}},
		{"q= with dns/txt", "DKIM-Signature: v=1; a=rsa-sha256; q=other:DNS/TXT; d=example.org; s=rsa2048; h=from; bh=AAAA; b=AAAAAAAAAAAA\r\nFrom: a@example.org\r\n\r\n", want{status: StatusFail, reason: "body hash mismatch"}},
		{"bad d=", "DKIM-Signature: v=1; a=rsa-sha256; d=example..org; s=rsa2048; h=from; bh=AAAA; b=AAAAAAAAAAAA\r\nFrom: a@example.org\r\n\r\n", want{status: StatusPermError, reason: "malformed signature"}},
		{"i= without @", "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; i=example.org; s=rsa2048; h=from; bh=AAAA; b=AAAAAAAAAAAA\r\nFrom: a@example.org\r\n\r\n", want{status: StatusPermError, reason: "malformed signature"}},
		{"i= in a subdomain", "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; i=a@Mail.Example.org; s=rsa2048; h=from; bh=AAAA; b=AAAAAAAAAAAA\r\nFrom: a@example.org\r\n\r\n", want{status: StatusFail, reason: "body hash mismatch"}},
		{"bad base64 in b=", "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=rsa2048; h=from; bh=AAAA; b=AAA*AAAAAAAA\r\nFrom: a@example.org\r\n\r\n", want{status: StatusPermError, reason: "malformed signature"}},
		{"a= without hash", "DKIM-Signature: v=1; a=rsa; d=example.org; s=rsa2048; h=from; bh=AAAA; b=AAAAAAAAAAAA\r\nFrom: a@example.org\r\n\r\n", want{status: StatusPermError, reason: "malformed signature"}},
		{"no end of header", "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=rsa2048; h=from; bh=AAAA; b=AAAAAAAAAAAA\r\nFrom: a@example.org", want{status: StatusFail, reason: "body hash mismatch"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Start(context.Background(), r, []byte(tt.header), atT0plus(0))
			_, _ = v.Write([]byte("body\r\n"))
			got := v.Results()
			if len(got) != 1 {
				t.Fatalf("got %d results, want 1", len(got))
			}
			g := got[0]
			if g.Status != tt.want.status || g.Reason != tt.want.reason {
				t.Errorf("got %s (%s) err=%v, want %s (%s)", g.Status, g.Reason, g.Err, tt.want.status, tt.want.reason)
			}
			if tt.want.err != nil && !errors.Is(g.Err, tt.want.err) {
				t.Errorf("err %v, want %v", g.Err, tt.want.err)
			}
		})
	}
}

// Results may be called twice; Write after Results neither blocks nor fails.
func TestResultsTwice(t *testing.T) {
	_, r := newDNS(t, fixtureZone(t), resolver.Config{})
	header, body := splitMessage(t, readFile(t, "ed25519-relaxed.eml"))
	v := Start(context.Background(), r, header, nil)
	_, _ = v.Write(body)
	a := v.Results()
	if n, err := v.Write(body); n != len(body) || err != nil {
		t.Errorf("Write after Results = %d, %v", n, err)
	}
	b := v.Results()
	if len(a) != 1 || len(b) != 1 || a[0] != b[0] || a[0].Status != StatusPass {
		t.Errorf("Results: %+v then %+v", a, b)
	}
}

// Signatures refused before any lookup do not count against MaxSignatures.
func TestCapCountsVerifiedOnly(t *testing.T) {
	srv, r := newDNS(t, fixtureZone(t), resolver.Config{})
	sig := func(sel string) string {
		return "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=" + sel + "; h=from; bh=AAAA; b=AAAAAAAAAAAA\r\n"
	}
	header := "DKIM-Signature: garbage\r\n" +
		"DKIM-Signature: v=1; a=rsa-sha1; d=example.org; s=rsa1024; h=from; bh=AAAA; b=BBBBBBBBBBBB\r\n" +
		sig("rsa2048") + sig("rsa1024") + sig("rsa4096") + "From: a@example.org\r\n\r\n"
	v := Start(context.Background(), r, []byte(header), &Options{MaxSignatures: 2})
	_, _ = v.Write([]byte("body\r\n"))
	got := v.Results()
	wants := []struct {
		status Status
		reason string
	}{
		{StatusPermError, "malformed signature"},
		{StatusPolicy, "rsa-sha1 not accepted"},
		{StatusFail, "body hash mismatch"},
		{StatusFail, "body hash mismatch"},
		{StatusPolicy, "not verified: too many signatures"},
	}
	if len(got) != len(wants) {
		t.Fatalf("%d results, want %d", len(got), len(wants))
	}
	for i, w := range wants {
		if got[i].Status != w.status || got[i].Reason != w.reason {
			t.Errorf("signature %d: %s (%s), want %s (%s)", i, got[i].Status, got[i].Reason, w.status, w.reason)
		}
	}
	if q := srv.Queries(); q != 2 {
		t.Errorf("%d DNS queries, want 2", q)
	}
}

// A panic while hashing or verifying becomes a temperror for the message,
// never a crash (the state is broken on purpose to make one).
func TestPanicBecomesTempError(t *testing.T) {
	_, r := newDNS(t, fixtureZone(t), resolver.Config{})
	header, body := splitMessage(t, readFile(t, "rsa2048-relaxed.eml"))
	tempErr := []want{{status: StatusTempError, reason: "verification not completed", err: ErrInternal}}

	v := Start(context.Background(), r, header, nil)
	v.bodies[1].c.h = nil // Write will panic
	if n, err := v.Write(body); n != len(body) || err != nil {
		t.Errorf("Write = %d, %v", n, err)
	}
	check(t, v.Results(), tempErr)

	v = Start(context.Background(), r, header, nil)
	_, _ = v.Write(body)
	v.bodies[1] = nil // verify will panic
	check(t, v.Results(), tempErr)
}

// TestBodyLengthTag: the body length tag l= (RFC 6376 §3.5) under the three
// settings. The danger is content after the signed length (§8.2): by
// default a signature with such a tail is "policy", one whose l= covers the
// whole canonical body verifies as usual; "refuse" is the old behaviour and
// mox's, "accept" is RFC 6376 as written (OpenDKIM, dkimpy). length-tag.eml
// is signed by dkimpy with l= the whole body (121 canonical bytes).
func TestBodyLengthTag(t *testing.T) {
	_, r := newDNS(t, fixtureZone(t), resolver.Config{})
	whole := readFile(t, "length-tag.eml")
	tail := append(bytes.Clone(whole), "\r\n-- \r\nAppended by a list or an attacker: click here\r\n"...)
	cut := bytes.TrimSuffix(bytes.TrimRight(whole, "\r\n"), []byte("Alice"))
	okL := pass("example.org", "rsa2048", "rsa-sha256", 2048)
	tailPolicy := want{status: StatusPolicy, reason: "unsigned content after l= (121 of 178 body bytes signed)", err: ErrUnsignedTail}
	refused := want{status: StatusPolicy, reason: "body length tag (l=) not accepted", err: ErrBodyLength}
	short := want{status: StatusFail, reason: "body shorter than l="}
	tests := []struct {
		name string
		msg  []byte
		mode BodyLength
		want want
	}{
		{"whole body, default", whole, "", okL},
		{"whole body, whole-body", whole, BodyLengthWhole, okL},
		{"whole body, accept", whole, BodyLengthAccept, okL},
		{"whole body, refuse", whole, BodyLengthRefuse, refused},
		{"appended tail, default", tail, "", tailPolicy},
		{"appended tail, accept", tail, BodyLengthAccept, okL},
		{"appended tail, refuse", tail, BodyLengthRefuse, refused},
		{"body shorter than l=, default", cut, "", short},
		{"body shorter than l=, accept", cut, BodyLengthAccept, short},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, chunk := range []int{0, 1, 7} {
				check(t, verify(t, r, tt.msg, &Options{BodyLength: tt.mode}, chunk), []want{tt.want})
			}
		})
	}
	// A broken signature with a tail stays "fail": the tail check comes
	// after the cryptography.
	broken := bytes.Replace(tail, []byte("Hello Bob"), []byte("Hello Eve"), 1)
	check(t, verify(t, r, broken, nil, 0), []want{{status: StatusFail, reason: "body hash mismatch"}})
}

func TestParseBodyLength(t *testing.T) {
	tests := []struct {
		in string
		n  int64
		ok bool
	}{
		{"0", 0, true}, {"121", 121, true}, {"00042", 42, true},
		{"9223372036854775807", math.MaxInt64, true},
		{"99999999999999999999999", math.MaxInt64, true}, // longer than any body
		{strings.Repeat("9", 76), math.MaxInt64, true},
		{strings.Repeat("9", 77), 0, false}, // 1*76DIGIT
		{"", 0, false}, {"-1", 0, false}, {"12a", 0, false}, {"1 2", 0, false},
	}
	for _, tt := range tests {
		if n, ok := parseBodyLength(tt.in); n != tt.n || ok != tt.ok {
			t.Errorf("parseBodyLength(%q) = %d, %v; want %d, %v", tt.in, n, ok, tt.n, tt.ok)
		}
	}
}
