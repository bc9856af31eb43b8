package arc

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// FuzzChain feeds arbitrary header blocks and bodies through the ARC
// header parsing and chain validation, with the chains' real keys in DNS
// (so mutated chains reach the cryptography). It checks that nothing
// panics or hangs and that the verdict is consistent: pass only with every
// seal and the newest message signature verified; none only without ARC
// fields.
func FuzzChain(f *testing.F) {
	files, _ := filepath.Glob("testdata/chains/*.eml")
	for _, name := range files {
		msg, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		i := bytes.Index(msg, []byte("\r\n\r\n"))
		f.Add(msg[:i+4], msg[i+4:])
	}
	f.Add([]byte("ARC-Seal: i=1\r\n\r\n"), []byte(""))
	f.Add([]byte("ARC-Authentication-Results: i=1; x; arc=pass\r\nARC-Message-Signature: i=1; a=rsa-sha256; b=AA==; bh=; d=a; h=from; s=b\r\nARC-Seal: i=1; cv=none; a=ed25519-sha256; b=AA==; d=a; s=b\r\n\r\n"), []byte("x\r\n"))
	_, r := newDNS(f)
	f.Fuzz(func(t *testing.T, header, body []byte) {
		v := Start(context.Background(), r, header, &Options{MaxSets: 5})
		v.Write(body) //nolint:errcheck
		got := v.Result()
		switch got.Status {
		case StatusNone:
			if bytes.Contains(bytes.ToLower(header), []byte("arc-seal:")) && got.Sets != nil {
				t.Fatalf("none with sets")
			}
		case StatusPass:
			if len(got.Sets) == 0 || len(got.Sets) > 5 || !got.Latest().MessagePass {
				t.Fatalf("pass with %d sets, newest AMS %v", len(got.Sets), got.Latest() != nil && got.Latest().MessagePass)
			}
			for _, s := range got.Sets {
				if !s.SealPass {
					t.Fatalf("pass with seal %d unverified", s.Instance)
				}
			}
		case StatusFail:
			if got.Err == nil {
				t.Fatalf("fail without an error")
			}
		default:
			t.Fatalf("status %q", got.Status)
		}
	})
}
