package dkimverify

import (
	"bytes"
	"crypto/sha256"
	"math/rand/v2"
	"strings"
	"testing"
)

// recorder is a hash.Hash that keeps what it is given, so tests can compare
// canonical forms as text.
type recorder struct{ bytes.Buffer }

func (r *recorder) Sum(b []byte) []byte { return append(b, r.Bytes()...) }
func (r *recorder) Size() int           { return 0 }
func (r *recorder) BlockSize() int      { return 1 }

// canonChunks canonicalises body written in the given pieces.
func canonChunks(relaxed bool, pieces ...string) string {
	var rec recorder
	c := newBodyCanon(&rec, relaxed)
	for _, p := range pieces {
		c.Write([]byte(p))
	}
	c.Close()
	return rec.String()
}

// refCanon is the obvious, non-streaming reading of RFC 6376 §3.4.3 and
// §3.4.4 (with a bare LF read as CRLF), against which the streaming one is
// checked.
func refCanon(body string, relaxed bool) string {
	var fixed strings.Builder
	for i := 0; i < len(body); i++ {
		if body[i] == '\n' && (i == 0 || body[i-1] != '\r') {
			fixed.WriteByte('\r')
		}
		fixed.WriteByte(body[i])
	}
	lines := strings.Split(fixed.String(), "\r\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1] // the body ended with a line end
	}
	if relaxed {
		for i, l := range lines {
			l = strings.Join(strings.FieldsFunc(l, func(r rune) bool { return r == ' ' || r == '\t' }), " ")
			if lead := strings.TrimLeft(lines[i], " \t"); lead != lines[i] && l != "" {
				l = " " + l // a leading run is one SP too
			}
			lines[i] = l
		}
	}
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) == 0 {
		if relaxed {
			return ""
		}
		return "\r\n"
	}
	return strings.Join(lines, "\r\n") + "\r\n"
}

func TestBodyCanon(t *testing.T) {
	tests := []struct {
		name, in, simple, relaxed string
	}{
		// RFC 6376 §3.4.5, the body of the example.
		{"RFC 6376 3.4.5", " C \r\nD \t E\r\n\r\n\r\n", " C \r\nD \t E\r\n", " C\r\nD E\r\n"},
		{"empty", "", "\r\n", ""},
		{"only empty lines", "\r\n\r\n\r\n", "\r\n", ""},
		{"only whitespace lines", " \r\n\t\r\n", " \r\n\t\r\n", ""},
		{"no final line end", "abc", "abc\r\n", "abc\r\n"},
		{"no final line end, trailing space", "abc  ", "abc  \r\n", "abc\r\n"},
		{"inner empty lines kept", "a\r\n\r\n\r\nb\r\n\r\n", "a\r\n\r\n\r\nb\r\n", "a\r\n\r\n\r\nb\r\n"},
		{"bare LF", "a\nb \n\n", "a\r\nb \r\n", "a\r\nb\r\n"},
		{"bare LF empty lines then text", "a\n\n\nb", "a\r\n\r\n\r\nb\r\n", "a\r\n\r\n\r\nb\r\n"},
		{"bare CR is a byte", "a\rb\r\n", "a\rb\r\n", "a\rb\r\n"},
		{"final bare CR", "a\r", "a\r\r\n", "a\r\r\n"},
		{"CR CR LF", "a\r\r\n", "a\r\r\n", "a\r\r\n"},
		{"whitespace runs", "a \t b\t\tc   \r\n", "a \t b\t\tc   \r\n", "a b c\r\n"},
		{"leading whitespace", "  a\r\n\tb\r\n", "  a\r\n\tb\r\n", " a\r\n b\r\n"},
		{"whitespace line inside", "a\r\n  \r\nb\r\n", "a\r\n  \r\nb\r\n", "a\r\n\r\nb\r\n"},
		{"whitespace around CR", "a \r b\r\n", "a \r b\r\n", "a \r b\r\n"},
		{"one CRLF", "\r\n", "\r\n", ""},
		{"trailing whitespace then empty lines", "x \r\n \r\n\r\n", "x \r\n \r\n", "x\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, c := range []struct {
				relaxed bool
				want    string
			}{{false, tt.simple}, {true, tt.relaxed}} {
				if ref := refCanon(tt.in, c.relaxed); ref != c.want {
					t.Fatalf("relaxed=%v: reference gives %q, table says %q", c.relaxed, ref, c.want)
				}
				if got := canonChunks(c.relaxed, tt.in); got != c.want {
					t.Errorf("relaxed=%v: %q -> %q, want %q", c.relaxed, tt.in, got, c.want)
				}
				checkSplits(t, tt.in, c.relaxed, c.want)
			}
		})
	}
}

// checkSplits writes in in 1-byte chunks and cut in two at every place;
// every way must give want.
func checkSplits(t *testing.T, in string, relaxed bool, want string) {
	t.Helper()
	bytewise := make([]string, len(in))
	for i := 0; i < len(in); i++ { // bytes, not runes
		bytewise[i] = in[i : i+1]
	}
	if got := canonChunks(relaxed, bytewise...); got != want {
		t.Errorf("relaxed=%v %q in 1-byte chunks -> %q, want %q", relaxed, in, got, want)
	}
	for i := 0; i <= len(in); i++ {
		if got := canonChunks(relaxed, in[:i], in[i:]); got != want {
			t.Errorf("relaxed=%v %q split at %d -> %q, want %q", relaxed, in, i, got, want)
		}
	}
}

// randomBody makes bodies rich in what canonicalisation cares about.
func randomBody(r *rand.Rand, n int) string {
	pieces := []string{"a", "b", "word", " ", "  ", "\t", " \t ", "\r\n", "\r\n\r\n", "\n", "\r", "xyz", "\r\n \r\n",
		"abcdefghijklmnopq", "ABCD+/==0123456789", "caf\xc3\xa9 \xff\x80", "\x00\x1f\x7f", "long run of words here"}
	var b strings.Builder
	for range n {
		b.WriteString(pieces[r.IntN(len(pieces))])
	}
	return b.String()
}

// Random bodies against the reference, whole, bytewise and at every split.
func TestBodyCanonRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 400 {
		in := randomBody(r, r.IntN(30))
		for _, relaxed := range []bool{false, true} {
			want := refCanon(in, relaxed)
			if got := canonChunks(relaxed, in); got != want {
				t.Fatalf("relaxed=%v %q -> %q, want %q", relaxed, in, got, want)
			}
			checkSplits(t, in, relaxed, want)
		}
	}
}

// Long runs of empty lines are held as a count and hashed in pieces.
func TestBodyCanonManyEmptyLines(t *testing.T) {
	in := "a\r\n" + strings.Repeat("\r\n", 1000) + "b\r\n" + strings.Repeat("\n", 1000)
	for _, relaxed := range []bool{false, true} {
		want := refCanon(in, relaxed)
		if got := canonChunks(relaxed, in); got != want {
			t.Errorf("relaxed=%v: got %d bytes, want %d", relaxed, len(got), len(want))
		}
		if got := canonChunks(relaxed, in[:500], in[500:1001], in[1001:]); got != want {
			t.Errorf("relaxed=%v in 3 pieces: got %d bytes, want %d", relaxed, len(got), len(want))
		}
	}
}

// The canonicaliser feeds a real hash the same bytes as the reference.
func TestBodyCanonSHA256(t *testing.T) {
	in := strings.Repeat("The quick  brown fox \t\r\n\r\n", 5000)
	for _, relaxed := range []bool{false, true} {
		h := sha256.New()
		c := newBodyCanon(h, relaxed)
		for off := 0; off < len(in); off += 4093 {
			c.Write([]byte(in[off:min(off+4093, len(in))]))
		}
		c.Close()
		want := sha256.Sum256([]byte(refCanon(in, relaxed)))
		if !bytes.Equal(h.Sum(nil), want[:]) {
			t.Errorf("relaxed=%v: sha256 differs from the reference", relaxed)
		}
	}
}

// FuzzBodyCanon checks the streaming canonicalisers against the reference,
// for any body cut in three anywhere.
func FuzzBodyCanon(f *testing.F) {
	f.Add(" C \r\nD \t E\r\n\r\n\r\n", uint16(3), uint16(9))
	f.Add("a\n\n\r\r\n \t", uint16(1), uint16(2))
	f.Fuzz(func(t *testing.T, in string, c1, c2 uint16) {
		i := int(c1) % (len(in) + 1)
		j := i + int(c2)%(len(in)-i+1)
		for _, relaxed := range []bool{false, true} {
			want := refCanon(in, relaxed)
			if got := canonChunks(relaxed, in[:i], in[i:j], in[j:]); got != want {
				t.Fatalf("relaxed=%v %q cut at %d,%d -> %q, want %q", relaxed, in, i, j, got, want)
			}
		}
	})
}
