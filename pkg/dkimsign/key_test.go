package dkimsign

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/authmilter/authmilter/pkg/dkimverify"
)

// Test keys are generated once per test binary: RSA generation is slow.
var (
	keyOnce              sync.Once
	testRSA1024, testRSA *rsa.PrivateKey
	testEd               ed25519.PrivateKey
)

func testKeys(t testing.TB) {
	t.Helper()
	keyOnce.Do(func() {
		var err error
		if testRSA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if testRSA1024, err = rsa.GenerateKey(rand.Reader, 1024); err != nil {
			panic(err)
		}
		_, testEd, err = ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
	})
}

// writeFile writes data to dir/name with mode, whatever the umask.
func writeFile(t testing.TB, dir, name string, data []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func mustPKCS8(t testing.TB, k crypto.Signer) []byte {
	t.Helper()
	b, err := MarshalPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParsePrivateKey(t *testing.T) {
	testKeys(t)
	rsa512, err := os.ReadFile("testdata/rsa512.pem")
	if err != nil {
		t.Fatal(err)
	}
	edFile, err := os.ReadFile("testdata/ed25519.key")
	if err != nil {
		t.Fatal(err)
	}
	seed := testEd.Seed()
	ecKey := "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIGcRWkHvGvvI3jK1Jz6cC3Hq3x0F1w7sq5Q3aQmzDqGGoAoGCCqGSM49\n-----END EC PRIVATE KEY-----\n"
	tests := []struct {
		name    string
		data    []byte
		alg     string
		bits    int
		wantErr error
	}{
		{"PKCS#1 RSA", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(testRSA)), AlgRSA, 2048, nil},
		{"PKCS#8 RSA", mustPKCS8(t, testRSA), AlgRSA, 2048, nil},
		{"PKCS#1 RSA 1024", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(testRSA1024)), AlgRSA, 1024, nil},
		{"PKCS#8 Ed25519", mustPKCS8(t, testEd), AlgEd25519, 256, nil},
		{"base64 seed", []byte(base64.StdEncoding.EncodeToString(seed) + "\n"), AlgEd25519, 256, nil},
		{"base64 seed+public", []byte(base64.StdEncoding.EncodeToString(testEd)), AlgEd25519, 256, nil},
		{"dkimpy dknewkey file", edFile, AlgEd25519, 256, nil},
		{"seed+wrong public", []byte(base64.StdEncoding.EncodeToString(append(append([]byte{}, seed...), make([]byte, 32)...))), "", 0, ErrKeyFormat},
		{"RSA 512 too small", rsa512, "", 0, ErrKeySize},
		{"base64 of 16 bytes", []byte(base64.StdEncoding.EncodeToString(make([]byte, 16))), "", 0, ErrKeyFormat},
		{"not base64", []byte("hello world!"), "", 0, ErrKeyFormat},
		{"empty", nil, "", 0, ErrKeyFormat},
		{"EC key", []byte(ecKey), "", 0, ErrKeyFormat},
		{"encrypted PKCS#8", pemOf("ENCRYPTED PRIVATE KEY", []byte{1, 2, 3}), "", 0, ErrKeyFormat},
		{"encrypted PKCS#1", []byte("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n"), "", 0, ErrKeyFormat},
		{"PEM garbage", pemOf("PRIVATE KEY", []byte("garbage")), "", 0, ErrKeyFormat},
		{"cut PEM", []byte("-----BEGIN PRIVATE KEY-----\nMIIE"), "", 0, ErrKeyFormat},
		{"public key PEM", pemOf("PUBLIC KEY", []byte{1}), "", 0, ErrKeyFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParsePrivateKey(tt.data)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			alg, bits, err := KeyInfo(k.Public())
			if err != nil || alg != tt.alg || bits != tt.bits {
				t.Errorf("KeyInfo = %s %d %v, want %s %d", alg, bits, err, tt.alg, tt.bits)
			}
		})
	}
	// The seed form and PKCS #8 give the same key.
	k, _ := ParsePrivateKey([]byte(base64.StdEncoding.EncodeToString(seed)))
	if !k.(ed25519.PrivateKey).Equal(testEd) {
		t.Error("seed form gives another key")
	}
}

func TestLoadKeyFile(t *testing.T) {
	testKeys(t)
	dir := t.TempDir()
	data := mustPKCS8(t, testEd)
	tests := []struct {
		mode    os.FileMode
		wantErr error
	}{
		{0o600, nil},
		{0o400, nil},
		{0o640, ErrKeyPermissions},
		{0o604, ErrKeyPermissions},
		{0o644, ErrKeyPermissions},
		{0o620, ErrKeyPermissions},
	}
	for _, tt := range tests {
		p := writeFile(t, dir, "k"+tt.mode.String(), data, tt.mode)
		_, err := LoadKeyFile(p)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("mode %04o: err = %v, want %v", tt.mode, err, tt.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), p) {
			t.Errorf("mode %04o: error does not name the file: %v", tt.mode, err)
		}
	}
	if _, err := LoadKeyFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyFile(filepath.Join(dir, "d")); !errors.Is(err, ErrKeyFormat) {
		t.Errorf("directory: %v", err)
	}
	bad := writeFile(t, dir, "bad", []byte("nonsense"), 0o600)
	if _, err := LoadKeyFile(bad); !errors.Is(err, ErrKeyFormat) || !strings.Contains(err.Error(), bad) {
		t.Errorf("bad content: %v", err)
	}
}

func TestKeyRecordRoundTrip(t *testing.T) {
	testKeys(t)
	for _, k := range []crypto.Signer{testRSA, testRSA1024, testEd} {
		txt, err := TXTRecord(k.Public())
		if err != nil {
			t.Fatal(err)
		}
		rec, err := dkimverify.ParseKeyRecord(txt)
		if err != nil {
			t.Fatalf("%s: %v", txt, err)
		}
		alg, bits, _ := KeyInfo(k.Public())
		if rec.Type != alg || rec.Bits != bits || !rec.Matches(k) || len(rec.Notes) != 0 {
			t.Errorf("%s: got %+v", txt, rec)
		}
		other := testEd
		if alg == AlgEd25519 {
			_, other, _ = ed25519.GenerateKey(rand.Reader)
		}
		if rec.Matches(other) {
			t.Errorf("%s matches another key", txt)
		}
	}
}

func TestSplitTXTAndZoneRecord(t *testing.T) {
	for _, n := range []int{0, 1, 255, 256, 510, 511, 800} {
		v := strings.Repeat("a", n)
		parts := SplitTXT(v)
		if strings.Join(parts, "") != v {
			t.Errorf("%d: parts do not join to the value", n)
		}
		for _, p := range parts {
			if len(p) > 255 {
				t.Errorf("%d: part of %d bytes", n, len(p))
			}
		}
		if want := max(1, (n+254)/255); len(parts) != want {
			t.Errorf("%d: %d parts, want %d", n, len(parts), want)
		}
	}
	if got := ZoneRecord("s._domainkey.example.com", `v=DKIM1; n="x"`); got != `s._domainkey.example.com. IN TXT "v=DKIM1; n=\"x\""` {
		t.Errorf("ZoneRecord = %s", got)
	}
}
