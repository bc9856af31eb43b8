package incoming

import (
	"bytes"
	"regexp"
	"testing"
)

// quoteFrom is mboxrd's quoting: a line that is "From " behind any number
// of ">" gets one more.
var quoteFrom = regexp.MustCompile(`(?m)^(>*From )`)

// FuzzMboxRoundTrip writes fuzzed mails (the input cut at NUL bytes, each
// ending in a newline) as an mboxrd file — a "From " line, the quoted
// mail, an empty line — and checks that splitMbox gives back exactly
// those mails, each with the empty line that ended it, in order, for any
// content: lines of any length (over the reader's 4 KiB buffer), CR LF,
// empty mails, bodies with "From " after an empty line.
func FuzzMboxRoundTrip(f *testing.F) {
	f.Add([]byte("Subject: a\n\nFrom here on\n\x00Subject: b\n\n>From quoted\n"))
	f.Add([]byte("a\r\n\r\nFrom x\r\n\x00\x00" + string(bytes.Repeat([]byte("y"), 5000))))
	f.Add([]byte("\n\nFrom \n>>From \n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var mails [][]byte
		var mbox bytes.Buffer
		for _, m := range bytes.Split(in, []byte{0}) {
			if len(m) == 0 || m[len(m)-1] != '\n' {
				m = append(m, '\n')
			}
			mails = append(mails, m)
			mbox.WriteString("From sender@example.test Thu Jan  1 00:00:00 2026\n")
			mbox.Write(quoteFrom.ReplaceAll(m, []byte(">$1")))
			mbox.WriteString("\n")
		}
		var got [][]byte
		err := splitMbox(&mbox, 1<<20, func(msg []byte, tooBig bool) error {
			if tooBig {
				t.Fatalf("mail %d too big", len(got))
			}
			got = append(got, bytes.Clone(msg))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(mails) {
			t.Fatalf("%d mails back, %d in", len(got), len(mails))
		}
		for i := range mails {
			if want := append(bytes.Clone(mails[i]), '\n'); !bytes.Equal(got[i], want) {
				t.Fatalf("mail %d:\n got %q\nwant %q", i, got[i], want)
			}
		}
	})
}
