package dkimverify

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/emersion/go-msgauth/dkim"
)

// The benchmarks sign their large bodies with go-msgauth's signer (not ours)
// and the test-only rsa2048 key of testdata/keys, published in keys.zone.

const benchHeader = "From: Alice Example <alice@example.org>\r\n" +
	"To: Bob <bob@example.net>\r\n" +
	"Subject: benchmark\r\n" +
	"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n" +
	"Message-ID: <bench@example.org>\r\n" +
	"\r\n"

// benchChunk is a 64 KiB body piece of 1 KiB lines; bodies are made of copies.
var benchChunk = func() []byte {
	line := strings.Repeat("The quick brown fox jumps over the lazy dog.  ", 23)[:1022] + "\r\n"
	return []byte(strings.Repeat(line, 64))
}()

// benchBase64 is 64 KiB of base64 lines, as an attachment is sent.
var benchBase64 = func() []byte {
	raw := make([]byte, 48<<10)
	for i := range raw {
		raw[i] = byte(i * 7)
	}
	enc := base64.StdEncoding.EncodeToString(raw)
	var out []byte
	for len(enc) > 0 && len(out) < 64<<10 {
		n := min(76, len(enc))
		out = append(append(out, enc[:n]...), '\r', '\n')
		enc = enc[n:]
	}
	return out
}()

// signedHeader signs a body of n copies of chunk with relaxed/relaxed and
// returns the header block with the DKIM-Signature on top.
func signedHeader(tb testing.TB, chunk []byte, n int) []byte {
	tb.Helper()
	key := readRSAKey(tb, "keys/rsa2048.pem")
	s, err := dkim.NewSigner(&dkim.SignOptions{
		Domain: "example.org", Selector: "rsa2048", Signer: key,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             []string{"From", "To", "Subject", "Date", "Message-ID"},
	})
	if err != nil {
		tb.Fatal(err)
	}
	_, _ = s.Write([]byte(benchHeader))
	for range n {
		_, _ = s.Write(chunk)
	}
	if err := s.Close(); err != nil {
		tb.Fatal(err)
	}
	return []byte(s.Signature() + benchHeader)
}

// BenchmarkVerify is the verify cost per message against body size: one
// RSA-2048 relaxed/relaxed signature, body written in 64 KiB chunks, key
// from the resolver's cache after the first message (as on a busy MX).
//
//	go test -run '^$' -bench Verify -benchmem ./pkg/dkimverify/
func BenchmarkVerify(b *testing.B) {
	_, r := newDNS(b, fixtureZone(b), resolver.Config{CacheSize: 100})
	for _, size := range []int{1 << 10, 64 << 10, 1 << 20} {
		b.Run(byteSize(size), func(b *testing.B) {
			body := []byte(strings.Repeat(string(benchChunk), (size+len(benchChunk)-1)/len(benchChunk)))[:size]
			header := signedHeader(b, body, 1)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				v := Start(context.Background(), r, header, nil)
				for off := 0; off < len(body); off += 65535 {
					_, _ = v.Write(body[off:min(off+65535, len(body))])
				}
				if res := v.Results(); i == 0 && (len(res) != 1 || res[0].Status != StatusPass) {
					b.Fatalf("results %+v", res)
				}
			}
		})
	}
}

func byteSize(n int) string {
	switch {
	case n >= 1<<20:
		return strconv.Itoa(n>>20) + "MiB"
	case n >= 1<<10:
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}

// BenchmarkMemory64x20MB is the memory check of issue #3: 64 concurrent
// verifications, each streaming a 20 MiB body in 64 KiB chunks, must keep
// the process's peak RSS (VmHWM) under 200 MB. Run it alone, so that VmHWM
// is this benchmark's:
//
//	go test -run '^$' -bench Memory64x20MB -benchtime 1x ./pkg/dkimverify/
func BenchmarkMemory64x20MB(b *testing.B) {
	const sessions, chunks = 64, 320 // 320 × 64 KiB = 20 MiB
	_, r := newDNS(b, fixtureZone(b), resolver.Config{})
	header := signedHeader(b, benchChunk, chunks)
	b.SetBytes(sessions * chunks * int64(len(benchChunk)))
	for b.Loop() {
		var wg sync.WaitGroup
		errs := make(chan error, sessions)
		for range sessions {
			wg.Go(func() {
				v := Start(context.Background(), r, header, nil)
				for range chunks {
					_, _ = v.Write(benchChunk)
				}
				if res := v.Results(); len(res) != 1 || res[0].Status != StatusPass {
					errs <- fmt.Errorf("results %+v", res)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
	}
	hwm, err := vmHWM()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(hwm)/(1<<20), "peak-RSS-MiB")
	if hwm >= 200e6 {
		b.Errorf("peak RSS %d bytes, want < 200 MB", hwm)
	}
}

// vmHWM reads the process's peak resident set size from /proc/self/status.
func vmHWM() (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmHWM %q: %w", rest, err)
			}
			return kb << 10, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no VmHWM in /proc/self/status")
}

// BenchmarkBodyHash is the body canonicaliser plus SHA-256 alone, on 64 KiB
// chunks of text (1 KiB lines, single spaces, some double spaces) or of
// base64 (76-character lines, as in attachments), against plain SHA-256 of
// the same bytes (the floor).
//
//	go test -run '^$' -bench BodyHash ./pkg/dkimverify/
func BenchmarkBodyHash(b *testing.B) {
	for _, tc := range []struct {
		name    string
		relaxed bool
		raw     bool
		chunk   []byte
	}{
		{"sha256-only", false, true, benchChunk},
		{"simple", false, false, benchChunk},
		{"relaxed", true, false, benchChunk},
		{"relaxed-base64", true, false, benchBase64},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h := sha256.New()
			b.SetBytes(int64(len(tc.chunk)))
			b.ReportAllocs()
			for b.Loop() {
				if tc.raw {
					h.Write(tc.chunk)
					continue
				}
				c := newBodyCanon(h, tc.relaxed)
				c.Write(tc.chunk)
				c.Close()
			}
		})
	}
}
