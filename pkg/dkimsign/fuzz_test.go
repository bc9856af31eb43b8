package dkimsign

import (
	"encoding/base64"
	"os"
	"testing"
)

// Bad input never panics. The seeds run in plain `go test`.
func FuzzParseKeyRecord(f *testing.F) {
	for _, s := range []string{
		"v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDwIRP/UC3SBsEmGqZ9ZJW3/DkMoGeLnQg1fWn7/zYtIxN2SnFCjxOCKG9v3b4jYfcTNh5ijSsq631uBItLa7od+v/RtdC2UzJ1lWT947qR+Rcac2gbto/NMqJ0fzfVjH4OuKhitdY9tf6mcwGjaNBcWToIMmPSPDdQPNUYckcQ2QIDAQAB",
		"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
		"v=DKIM1; p=", "k=rsa; t=y:s; h=sha256; s=*; n=x; p=AAAA", "v=DKIM1; p=a; p=b", ";;;=", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rec, err := ParseKeyRecord(s)
		if err == nil && rec.Public == nil && !rec.Revoked {
			t.Errorf("%q: no key, no error, not revoked", s)
		}
	})
}

func FuzzParsePrivateKey(f *testing.F) {
	if b, err := os.ReadFile("testdata/ed25519.key"); err == nil {
		f.Add(b)
	}
	if b, err := os.ReadFile("testdata/rsa512.pem"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte(base64.StdEncoding.EncodeToString(make([]byte, 64))))
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\n\n-----END RSA PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParsePrivateKey(b)
		if err == nil {
			if _, _, err := KeyInfo(k.Public()); err != nil {
				t.Errorf("parsed key of unusable type: %v", err)
			}
		}
	})
}
