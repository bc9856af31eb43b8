package dkimverify

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/authmilter/authmilter/pkg/headerblock"
)

// sigFixture is a message signed by dkimpy, cut into its DKIM-Signature
// value, the other fields and the body, and the real resolver on a real DNS
// server that has its key.
type sigFixture struct {
	r    *resolver.Resolver
	sig  string
	rest []byte
	body []byte
}

func newSigFixture(t testing.TB) sigFixture {
	_, r := newDNS(t, fixtureZone(t), resolver.Config{CacheSize: 1000})
	header, body := splitMessage(t, readFile(t, "rsa2048-relaxed-simple.eml"))
	fx := sigFixture{r: r, body: body}
	for _, fl := range splitHeader(header) {
		value := strings.TrimSuffix(fl.value, "\r\n")
		if strings.EqualFold(fl.name, "DKIM-Signature") {
			fx.sig = value
			continue
		}
		fx.rest = headerblock.Append(fx.rest, fl.name, value)
	}
	return fx
}

func (fx sigFixture) verify(sig, body string) []Result {
	hdr := headerblock.Append(nil, "DKIM-Signature", sig)
	hdr = append(hdr, fx.rest...)
	hdr = append(hdr, '\r', '\n')
	v := Start(context.Background(), fx.r, hdr, &Options{Now: func() time.Time { return t0 }})
	v.Write([]byte(body)) //nolint:errcheck
	return v.Results()
}

// simpleBody is the body as c=simple hashes it (RFC 6376 §3.4.3): empty
// lines at the end ignored.
func simpleBody(b string) []byte {
	for strings.HasSuffix(b, "\r\n\r\n") {
		b = strings.TrimSuffix(b, "\r\n")
	}
	if b == "\r\n" {
		b = ""
	}
	return []byte(b)
}

// The fuzz target's fixture verifies as is, so its "never a wrong pass"
// is not vacuous.
func TestSigFixturePasses(t *testing.T) {
	fx := newSigFixture(t)
	if rs := fx.verify(fx.sig, string(fx.body)); len(rs) != 1 || rs[0].Status != StatusPass {
		t.Fatalf("fixture: %+v", rs)
	}
}

// FuzzVerifySignature replaces the DKIM-Signature value and the body of
// the fixture and verifies it. Whatever the input: no panic, one Result per
// signature with a status of RFC 8601 §2.7.1, and never a pass unless b=
// and bh= are the signer's own and the body is the signed one. Seeds:
// testdata/fuzz/FuzzVerifySignature.
func FuzzVerifySignature(f *testing.F) {
	fx := newSigFixture(f)
	orig := parseTags(fx.sig)
	f.Add(fx.sig, string(fx.body))
	f.Add(strings.Replace(fx.sig, "d=example.org", "d=example.org.evil", 1), string(fx.body))
	f.Add(strings.Replace(fx.sig, "a=rsa-sha256", "a=rsa-sha1", 1), string(fx.body))
	f.Add(" v=1; a=ed25519-sha256; d=example.org; s=ed25519; h=from; bh=; b=", "")
	f.Add(fx.sig, string(fx.body)+"tampered\r\n")
	f.Fuzz(func(t *testing.T, sig, body string) {
		res := fx.verify(sig, body)
		if len(res) != 1 {
			t.Fatalf("%d results for one signature", len(res))
		}
		switch res[0].Status {
		case StatusPass, StatusFail, StatusNeutral, StatusPolicy, StatusTempError, StatusPermError:
		default:
			t.Fatalf("status %q", res[0].Status)
		}
		tags := parseTags(sig)
		if res[0].Status == StatusPass && (stripFWS(tags["b"]) != stripFWS(orig["b"]) ||
			stripFWS(tags["bh"]) != stripFWS(orig["bh"]) || !bytes.Equal(simpleBody(body), simpleBody(string(fx.body)))) {
			t.Fatalf("pass for a changed signature or body: %q", sig)
		}
	})
}
