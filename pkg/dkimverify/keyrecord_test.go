package dkimverify

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

// TestParseKeyRecord: the one key-record parser, used by the verifier and by
// `authmilter check-dns`. The rows marked "issue 18" were approved by
// check-dns's former parser while the verifier refused them.
func TestParseKeyRecord(t *testing.T) {
	priv := readRSAKey(t, "keys/rsa2048.pem")
	spki, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	p := base64.StdEncoding.EncodeToString(spki)
	pkcs1 := base64.StdEncoding.EncodeToString(x509.MarshalPKCS1PublicKey(&priv.PublicKey))
	edP := "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
	edSPKI, _ := x509.MarshalPKIXPublicKey(ed25519.PublicKey(make([]byte, 32)))

	tests := []struct {
		txt    string
		parse  error // the error ParseKeyRecord wraps, nil for none
		usable error // the error of Usable(""), when it parses
		check  func(*KeyRecord) bool
	}{
		{"v=DKIM1; k=rsa; p=" + p, nil, nil, func(r *KeyRecord) bool { return r.Bits == 2048 && len(r.Notes) == 0 }},
		{"k=rsa; p=" + p, nil, nil, func(r *KeyRecord) bool { return len(r.Notes) == 1 }},
		{"p=" + p, nil, nil, func(r *KeyRecord) bool { return r.Type == "rsa" }},
		{"k=; p=" + p, nil, nil, func(r *KeyRecord) bool { return r.Type == "rsa" }},
		{"v=DKIM1; p=" + p[:100] + " \t" + p[100:], nil, nil, func(r *KeyRecord) bool { return r.Bits == 2048 }},
		{"v=DKIM1; p=" + pkcs1, nil, nil, func(r *KeyRecord) bool { return r.Bits == 2048 && len(r.Notes) == 1 }},
		{"v=DKIM1; k=ed25519; p=" + edP, nil, nil, func(r *KeyRecord) bool { return r.Bits == 256 && r.Type == "ed25519" }},
		{"v=DKIM1; k=rsa; t=y:s; h=sha1:sha256; s=email; n=hello; p=" + p, nil, nil, func(r *KeyRecord) bool { return r.Testing && r.Strict }},
		{"v=DKIM1; foo=bar; p=" + p, nil, nil, func(r *KeyRecord) bool { return len(r.Notes) == 1 }},
		{"v=DKIM1; k=rsa; p=" + p + ";", nil, nil, nil}, // one final ";" is allowed (§3.2)
		{"v=DKIM1; k=rsa; p=", nil, ErrKeyRevoked, func(r *KeyRecord) bool { return r.Revoked && r.Public == nil }},
		{"v=DKIM1; h=sha1; p=" + p, nil, ErrKeyHash, nil},
		{"v=DKIM1; s=tlsrpt; p=" + p, nil, ErrKeyService, nil},
		{"v=DKIM2; p=" + p, ErrKeyRecord, nil, nil},
		{"k=rsa; v=DKIM1; p=" + p, ErrKeyRecord, nil, nil},
		{"v=DKIM1; k=dsa; p=" + p, ErrKeyAlgorithm, nil, nil},
		{"v=DKIM1; k=rsa", ErrKeyRecord, nil, nil},
		{"v=DKIM1; p=!!!", ErrKeyRecord, nil, nil},
		{"v=DKIM1; p=" + p + "; p=" + p, ErrKeyRecord, nil, nil},
		{"v=DKIM1; garbage; p=" + p, ErrKeyRecord, nil, nil},
		{"v=DKIM1; k=ed25519; p=" + p, ErrKeyRecord, nil, nil},
		{"v=DKIM1; k=rsa; p=" + edP, ErrKeyRecord, nil, nil},
		{"v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(edSPKI), ErrKeyRecord, nil, nil},
		{"", ErrKeyRecord, nil, nil},
		// issue 18: check-dns's former parser approved these.
		{"v=DKIM1;; k=rsa; p=" + p, ErrKeyRecord, nil, nil},       // empty tag-spec
		{"v=DKIM1; k=rsa; p=" + p + ";;", ErrKeyRecord, nil, nil}, // a trailing ";;"
		{"v=DKIM1; 1x=y; p=" + p, ErrKeyRecord, nil, nil},         // tag name not starting with a letter
		{"v=DKIM1; n=a\x01b; p=" + p, ErrKeyRecord, nil, nil},     // control character in a value
	}
	for _, tt := range tests {
		rec, err := ParseKeyRecord(tt.txt)
		switch {
		case tt.parse != nil:
			if !errors.Is(err, tt.parse) || !errors.Is(err, ErrKeyRecord) {
				t.Errorf("%.60q: err = %v, want %v", tt.txt, err, tt.parse)
			}
			continue
		case err != nil:
			t.Errorf("%.60q: %v", tt.txt, err)
			continue
		}
		if u := rec.Usable(""); !errors.Is(u, tt.usable) || (u == nil) != (tt.usable == nil) {
			t.Errorf("%.60q: Usable = %v, want %v", tt.txt, u, tt.usable)
		}
		if tt.check != nil && !tt.check(rec) {
			t.Errorf("%.60q: got %+v", tt.txt, rec)
		}
	}

	// Usable checks a= against k=, and RSA keys under 1024 bits.
	rec, _ := ParseKeyRecord("v=DKIM1; k=ed25519; p=" + edP)
	if err := rec.Usable("rsa"); !errors.Is(err, ErrKeyType) {
		t.Errorf("ed25519 key, a=rsa: %v", err)
	}
	small := readRSAKey(t, "keys/rsa512.pem")
	rec, _ = ParseKeyRecord("p=" + base64.StdEncoding.EncodeToString(x509.MarshalPKCS1PublicKey(&small.PublicKey)))
	if err := rec.Usable("rsa"); !errors.Is(err, ErrKeyTooSmall) || !strings.Contains(err.Error(), "512 bits") {
		t.Errorf("512-bit key: %v", err)
	}
}

// Bad input never panics. The seeds run in plain `go test`.
func FuzzParseKeyRecord(f *testing.F) {
	for _, s := range []string{
		"v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDwIRP/UC3SBsEmGqZ9ZJW3/DkMoGeLnQg1fWn7/zYtIxN2SnFCjxOCKG9v3b4jYfcTNh5ijSsq631uBItLa7od+v/RtdC2UzJ1lWT947qR+Rcac2gbto/NMqJ0fzfVjH4OuKhitdY9tf6mcwGjaNBcWToIMmPSPDdQPNUYckcQ2QIDAQAB",
		"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
		"v=DKIM1; p=", "k=rsa; t=y:s; h=sha256; s=*; n=x; p=AAAA", "v=DKIM1; p=a; p=b", ";;;=", "",
		"v=DKIM1;; p=", "v=DKIM1; 1x=y; p=",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rec, err := ParseKeyRecord(s)
		switch {
		case err != nil && !errors.Is(err, ErrKeyRecord):
			t.Errorf("%q: %v does not wrap ErrKeyRecord", s, err)
		case err == nil && rec.Public == nil && !rec.Revoked:
			t.Errorf("%q: no key, no error, not revoked", s)
		case err == nil:
			_ = rec.Usable("rsa")
		}
	})
}
