package dkimverify

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// manyTags is "t0=1; t1=1; …" with n tags.
func manyTags(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = "t" + strconv.Itoa(i) + "=1"
	}
	return strings.Join(parts, "; ")
}

func TestParseTagListLong(t *testing.T) {
	got, err := parseTagList(manyTags(500))
	if err != nil || len(got) != 500 || got[499] != (tag{"t499", "1"}) {
		t.Errorf("parseTagList(500 tags) = %d tags, %v", len(got), err)
	}
}

func TestParseTagList(t *testing.T) {
	tests := []struct {
		in   string
		want []tag // nil with ok false: an error
		ok   bool
	}{
		{"", nil, true},
		{"a=1", []tag{{"a", "1"}}, true},
		{"a=1;", []tag{{"a", "1"}}, true},
		{" a = 1 ;\r\n\tb= x y ;  ", []tag{{"a", "1"}, {"b", "x y"}}, true},
		{"a=; b=2", []tag{{"a", ""}, {"b", "2"}}, true},
		{"h=from\r\n :to", []tag{{"h", "from\r\n :to"}}, true},
		{"z=caf\xc3\xa9", []tag{{"z", "caf\xc3\xa9"}}, true}, // 8-bit let through
		{"a=1; a=2", nil, false},                             // §3.2 duplicate
		{"a=1;; b=2", nil, false},                            // empty tag-spec inside
		{";", nil, false},
		{"garbage", nil, false},
		{"1a=x", nil, false},
		{"a-b=x", nil, false},
		{"=x", nil, false},
		{"a=x\x00y", nil, false},
		{"a=x\x7f", nil, false},
		{"a_1=x", []tag{{"a_1", "x"}}, true},
		// Long lists find duplicates through a set (issue 16).
		{manyTags(100) + "; t5=x", nil, false},
		{manyTags(100) + "; t99=x", nil, false},
		{manyTags(31) + "; t30=x", nil, false},
		{manyTags(32) + "; t0=x", nil, false},
		{manyTags(33) + "; t32=x", nil, false},
	}
	for _, tt := range tests {
		got, err := parseTagList(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("parseTagList(%q) error %v, want ok=%v", tt.in, err, tt.ok)
			continue
		}
		if err != nil && !errors.Is(err, errTagList) {
			t.Errorf("parseTagList(%q) error %v is not errTagList", tt.in, err)
		}
		if len(got) != len(tt.want) {
			t.Errorf("parseTagList(%q) = %q, want %q", tt.in, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("parseTagList(%q) = %q, want %q", tt.in, got, tt.want)
			}
		}
	}
}

// RFC 6376 §3.4.5: the header of the example, both canonicalisations.
func TestHeaderCanon(t *testing.T) {
	fields := headerFields([]byte("A: X\r\nB : Y\t\r\n\tZ  \r\n\r\n"))
	if len(fields) != 2 || fields[0].name != "A" || fields[1].name != "B" {
		t.Fatalf("fields %q", fields)
	}
	var relaxed, simple []byte
	for _, f := range fields {
		relaxed = appendCanonField(relaxed, f.raw, true)
		simple = appendCanonField(simple, f.raw, false)
	}
	if want := "a:X\r\nb:Y Z\r\n"; string(relaxed) != want {
		t.Errorf("relaxed %q, want %q", relaxed, want)
	}
	if want := "A: X\r\nB : Y\t\r\n\tZ  \r\n"; string(simple) != want {
		t.Errorf("simple %q, want %q", simple, want)
	}
	// Bare LF line ends and a last field without one become CRLF.
	fields = headerFields([]byte("X: a\n b\nY: c"))
	if len(fields) != 2 || string(fields[0].raw) != "X: a\r\n b\r\n" || string(fields[1].raw) != "Y: c\r\n" {
		t.Errorf("bare LF fields %q", fields)
	}
	if got := string(appendCanonField(nil, []byte("No-Colon \r\n"), true)); got != "no-colon:\r\n" {
		t.Errorf("field without colon: %q", got)
	}
}

func TestWithoutB(t *testing.T) {
	tests := []struct{ in, want string }{
		{"DKIM-Signature: a=1; b=abc; bh=xyz\r\n", "DKIM-Signature: a=1; b=; bh=xyz\r\n"},
		{"DKIM-Signature: a=1; bh=xyz;\r\n b=ab\r\n cd\r\n", "DKIM-Signature: a=1; bh=xyz;\r\n b=\r\n"},
		{"DKIM-Signature: b = ab cd ;a=1\r\n", "DKIM-Signature: b =;a=1\r\n"},
		{"DKIM-Signature: xb=1; bb=2\r\n", "DKIM-Signature: xb=1; bb=2\r\n"}, // no b= tag
		{"DKIM-Signature: a=1; b=", "DKIM-Signature: a=1; b="},
		{"DKIM-Signature", "DKIM-Signature"},
	}
	for _, tt := range tests {
		if got := string(withoutB([]byte(tt.in))); got != tt.want {
			t.Errorf("withoutB(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseKey(t *testing.T) {
	priv := readRSAKey(t, "keys/rsa1024.pem")
	spki, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	p := base64.StdEncoding.EncodeToString(spki)
	pkcs1 := base64.StdEncoding.EncodeToString(x509.MarshalPKCS1PublicKey(&priv.PublicKey))
	ed := "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
	sig := &signature{keyAlg: "rsa", sigTags: sigTags{domain: "example.org", identifier: "@mail.example.org"}}

	tests := []struct {
		name, record string
		reason       string // "" for usable
		bits         int
	}{
		{"SPKI", "v=DKIM1; k=rsa; p=" + p, "", 1024},
		{"no v, no k", "p=" + p, "", 1024},
		{"bare RSAPublicKey (erratum 3017)", "v=DKIM1; p=" + pkcs1, "", 1024},
		{"p folded", "v=DKIM1; p=" + p[:20] + "\r\n " + p[20:], "", 1024},
		{"v not first", "k=rsa; v=DKIM1; p=" + p, "malformed key", 0},
		{"v=DKIM2", "v=DKIM2; p=" + p, "malformed key", 0},
		{"no p", "v=DKIM1; k=rsa", "malformed key", 0},
		{"revoked", "v=DKIM1; p=", "key revoked", 0},
		{"duplicate tag", "v=DKIM1; p=" + p + "; p=" + p, "malformed key", 0},
		{"k=dsa", "v=DKIM1; k=dsa; p=" + p, "unsupported key algorithm", 0},
		{"ed25519 key, rsa signature", "v=DKIM1; k=ed25519; p=" + ed, "key type does not match a=", 0},
		{"ed25519 short", "v=DKIM1; k=ed25519; p=AAAA", "malformed key", 0},
		{"h=sha1", "v=DKIM1; h=sha1; p=" + p, "hash not allowed by key", 1024},
		{"h=sha1:sha256", "v=DKIM1; h=sha1:sha256; p=" + p, "", 1024},
		{"s=*", "v=DKIM1; s=*; p=" + p, "", 1024},
		{"s=email:tlsrpt", "v=DKIM1; s=tlsrpt : email; p=" + p, "", 1024},
		{"s=tlsrpt", "v=DKIM1; s=tlsrpt; p=" + p, "key not for email", 1024},
		{"t=y", "v=DKIM1; t=y; p=" + p, "", 1024},
		{"t=s, i= in a subdomain", "v=DKIM1; t=y:s; p=" + p, "i= not within d=", 1024},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := parseKey(tt.record)
			vd := k.usable(sig)
			switch {
			case tt.reason == "" && vd != nil:
				t.Errorf("unusable: %s (%v)", vd.reason, vd.err)
			case tt.reason != "" && (vd == nil || vd.reason != tt.reason):
				t.Errorf("verdict %+v, want %q", vd, tt.reason)
			}
			if k.bits != tt.bits {
				t.Errorf("bits %d, want %d", k.bits, tt.bits)
			}
		})
	}

	// t=s with i= equal to d= is fine.
	if vd := parseKey("v=DKIM1; t=s; p=" + p).usable(&signature{keyAlg: "rsa", sigTags: sigTags{domain: "Example.org", identifier: "a@example.ORG"}}); vd != nil {
		t.Errorf("t=s, i= at d=: %+v", vd)
	}
	// A 512-bit key is refused as policy (RFC 8301 §3.2).
	small := readRSAKey(t, "keys/rsa512.pem")
	vd := parseKey("p=" + base64.StdEncoding.EncodeToString(x509.MarshalPKCS1PublicKey(&small.PublicKey))).usable(sig)
	if vd == nil || vd.status != StatusPolicy || vd.reason != "key too small (512 bits)" || !errors.Is(vd.err, ErrKeyTooSmall) {
		t.Errorf("512-bit key: %+v", vd)
	}
}

// The key cache returns the parsed key it has, and stays bounded.
func TestKeyCache(t *testing.T) {
	rec := "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
	a, b := cachedKey(rec), cachedKey(rec)
	if a != b || a.alg != "ed25519" {
		t.Errorf("cachedKey twice: %p %p (%s)", a, b, a.alg)
	}
	for i := range 3 * keyCacheMax {
		cachedKey("p=" + strings.Repeat("A", i%7*4) + ";x=" + string(rune('a'+i%26)) + strings.Repeat("b", i))
	}
	if n := keyCache.Len(); n > keyCacheMax {
		t.Errorf("key cache holds %d entries, cap %d", n, keyCacheMax)
	}
}

// foldKey equals exactly when strings.EqualFold does, the comparison
// headerDigest used before it looked names up in an index.
func TestFoldKey(t *testing.T) {
	alphabet := []string{"a", "A", "k", "K", "\u212a", "s", "S", "\u017f", "\u0130", "i", "I", "\u0131", "ß", "ẞ", "-", "\xff", "\xfe", "\u00b5", "\u03bc", "\u039c", "\ufffd"}
	var all []string
	for _, a := range alphabet {
		for _, b := range alphabet {
			all = append(all, a+b)
		}
	}
	for _, x := range all {
		for _, y := range all {
			if got, want := string(foldKey(nil, x)) == string(foldKey(nil, y)), strings.EqualFold(x, y); got != want {
				t.Errorf("foldKey(%q) == foldKey(%q) is %v, EqualFold %v", x, y, got, want)
			}
		}
	}
}

// The index gives the same signed fields as the scan, for random blocks
// and h= lists: repeated names (oversigning), names not in the block,
// case variants and look-alikes.
func TestSignedFieldsIndexedEqualsScan(t *testing.T) {
	names := []string{"From", "from", "FROM", "To", "Subject", "X-A", "x-a", "Received", "\u212aey", "Key", "missing"}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 500 {
		var block strings.Builder
		for i := range rng.IntN(40) {
			fmt.Fprintf(&block, "%s: v%d\r\n", names[rng.IntN(len(names)-1)], i)
		}
		block.WriteString("\r\n")
		fields := headerFields([]byte(block.String()))
		s := &signature{relaxedHead: rng.IntN(2) == 0}
		for range rng.IntN(60) {
			s.headers = append(s.headers, names[rng.IntN(len(names))])
		}
		ix := &fieldIndex{}
		ix.build(fields)
		if a, b := appendSignedScan(nil, fields, s), appendSignedIndexed(nil, fields, ix, s); !bytes.Equal(a, b) {
			t.Fatalf("h=%v over\n%s\nscan:\n%s\nindex:\n%s", s.headers, block.String(), a, b)
		}
	}
}
