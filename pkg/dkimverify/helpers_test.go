package dkimverify

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/dnstest"
	"github.com/authmilter/authmilter/internal/resolver"
)

// t0 is the t= of every dkimpy fixture (see testdata/gen.py).
var t0 = time.Unix(1767225600, 0)

// atT0plus returns Options whose clock reads t0+d.
func atT0plus(d time.Duration) *Options {
	return &Options{Now: func() time.Time { return t0.Add(d) }}
}

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fixtureZone is the key records of the dkimpy fixtures and of the RFC examples.
func fixtureZone(t testing.TB) string {
	return string(readFile(t, "keys.zone")) + string(readFile(t, "rfc.zone"))
}

// newDNS starts the in-process authoritative server with zone and returns it
// with the real resolver pointed at it.
func newDNS(t testing.TB, zone string, cfg resolver.Config) (*dnstest.Server, *resolver.Resolver) {
	t.Helper()
	srv := dnstest.New(t, zone)
	cfg.Servers = []string{srv.Addr()}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = -1 // each test sees the zone as it is now
	}
	r, err := resolver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return srv, r
}

// splitMessage cuts a message into its header block (with the empty line)
// and its body.
func splitMessage(t testing.TB, msg []byte) (header, body []byte) {
	t.Helper()
	i := bytes.Index(msg, []byte("\r\n\r\n"))
	if i < 0 {
		t.Fatal("message has no end of header")
	}
	return msg[:i+4], msg[i+4:]
}

// verify runs a whole message through a Verifier, writing the body in chunks
// of chunk bytes (all at once if chunk <= 0), as the milter does.
func verify(t testing.TB, r TXTResolver, msg []byte, o *Options, chunk int) []Result {
	t.Helper()
	header, body := splitMessage(t, msg)
	v := Start(context.Background(), r, header, o)
	if chunk <= 0 {
		chunk = len(body) + 1
	}
	for len(body) > 0 {
		n := min(chunk, len(body))
		if w, err := v.Write(body[:n]); w != n || err != nil {
			t.Fatalf("Write = %d, %v; want %d, nil", w, err, n)
		}
		body = body[n:]
	}
	return v.Results()
}

// readRSAKey reads one of the test RSA keys (PKCS #1 PEM) in testdata.
func readRSAKey(t testing.TB, name string) *rsa.PrivateKey {
	t.Helper()
	block, _ := pem.Decode(readFile(t, name))
	if block == nil {
		t.Fatalf("%s: no PEM", name)
	}
	k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
