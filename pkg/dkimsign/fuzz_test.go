package dkimsign

import (
	"encoding/base64"
	"os"
	"testing"
)

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
