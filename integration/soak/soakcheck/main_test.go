package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authmilter/authmilter/internal/store"
	"github.com/authmilter/authmilter/pkg/report"
)

func TestRUAPolicies(t *testing.T) {
	zone := `; comment
org01.example. 3600 IN TXT "v=spf1 -all"
_dmarc.org01.example. 3600 IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@org01.example"
_dmarc.org02.example. 3600 IN TXT "v=DMARC1; p=none"
_dmarc.org03.example. 3600 IN TXT "v=DMARC1; p=none; " "rua=mailto:a@org03.example"
_dmarc.org04.example. 3600 IN TXT "v=spf1 rua=x"
`
	path := filepath.Join(t.TempDir(), "zone.txt")
	if err := os.WriteFile(path, []byte(zone), 0o644); err != nil {
		t.Fatal(err)
	}
	rua, err := ruaPolicies(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		domain string
		want   bool
	}{
		{"org01.example", true},
		{"sub.org01.example", true},
		{"org02.example", false},
		{"org03.example", true}, // split character-strings
		{"org04.example", false},
		{"example", false},
		{"other.example", false},
	} {
		if got := hasRUA(rua, tc.domain); got != tc.want {
			t.Errorf("hasRUA(%s) = %v, want %v", tc.domain, got, tc.want)
		}
	}
}

func TestFromDomain(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		msg, want string
		err       bool
	}{
		"display name": {"Subject: x\r\nFrom: A <a@Org01.Example>\r\n\r\nFrom: b@body.example\r\n", "org01.example", false},
		"bare":         {"from: a@org02.example\n\n", "org02.example", false},
		"only in body": {"Subject: x\n\nFrom: a@b.example\n", "", true},
		"no address":   {"From: nobody\n\n", "", true},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		if err := os.WriteFile(p, []byte(tc.msg), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := fromDomain(p)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("%s: got %q, %v; want %q (error %v)", name, got, err, tc.want, tc.err)
		}
	}
}

func TestFlat(t *testing.T) {
	s := func(phase string, rss, g, fd int64) Sample {
		return Sample{Phase: phase, RSSKiB: rss, Goroutines: g, FDs: fd}
	}
	steady := []Sample{s("idle-start", 18000, 13, 14), s("load", 30000, 40, 30), s("load", 31000, 30, 28),
		s("load", 30500, 45, 30), s("load", 31500, 35, 29), s("idle-end", 31000, 13, 14)}
	tests := []struct {
		name   string
		change func([]Sample)
		want   string // "" flat
	}{
		{"steady", func([]Sample) {}, ""},
		{"goroutines leak under load", func(x []Sample) { x[4].Goroutines = 300 }, "goroutines: peak 300"},
		{"fds leak under load", func(x []Sample) { x[3].FDs = 80 }, "fds: peak 80"},
		{"rss grows", func(x []Sample) { x[4].RSSKiB = 80000 }, "rss_kib: peak 80000"},
		{"goroutines left after the load", func(x []Sample) { x[5].Goroutines = 30 }, "goroutines: 30 idle after"},
		{"fds left after the load", func(x []Sample) { x[5].FDs = 20 }, "fds: 20 idle after"},
		{"too few samples", func(x []Sample) { x[1].Phase, x[2].Phase = "max", "max" }, "only 2 samples"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sum := &Summary{Samples: append([]Sample(nil), steady...)}
			tc.change(sum.Samples)
			got := strings.Join(flat(sum), "; ")
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("flat = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestCheck runs the whole check on a store written by the real store
// package: one acknowledged message lost, one recorded, one without rua.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("corpus/zone.txt", `_dmarc.rua.example. 300 IN TXT "v=DMARC1; p=none; rua=mailto:r@rua.example"`+"\n")
	write("corpus/index.tsv", "a.eml\t192.0.2.1\t-\th\ta@rua.example\tb@rcpt.test\nb.eml\t192.0.2.1\t-\th\ta@norua.example\tb@rcpt.test\n")
	write("corpus/a.eml", "From: a@rua.example\n\nhi\n")
	write("corpus/b.eml", "From: a@norua.example\n\nhi\n")
	write("acked.tsv", "Q1\ta.eml\taccept\nQ2\ta.eml\taccept\nQ3\tb.eml\taccept\nQ4\ta.eml\taccept\n")
	var samples strings.Builder
	samples.WriteString("# header\n")
	for i, ph := range []string{"idle-start", "load", "load", "load", "load", "idle-end"} {
		samples.WriteString("2026-11-22T16:00:00Z\t" + string(rune('0'+i)) + "\t" + ph + "\t30000\t20\t20\n")
	}
	write("samples.tsv", samples.String())
	state := filepath.Join(dir, "state")
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{SQLitePath: filepath.Join(state, "records.db"), SpoolDir: state})
	if err != nil {
		t.Fatal(err)
	}
	rec := report.Record{Time: time.Now().UTC(), Reporter: "mx.rcpt.test", QueueID: "Q1", HeaderFrom: "rua.example",
		SourceIP: "192.0.2.1", DMARCResult: "pass", Disposition: "none",
		Policy: report.PolicyPublished{Domain: "rua.example", P: "none", RUA: []report.URI{{Address: "mailto:r@rua.example"}}}}
	if err := st.Put(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// Q2's record is in a spool file the daemon left: the store replays it
	// in the background after Open, and check waits for that.
	rec.QueueID = "Q2"
	data, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	write("state/spool-0123456789abcdef.jsonl", `{"id":"0123456789abcdef0123456789abcdef","record":`+string(data)+"}\n")
	s, err := check(ctx, filepath.Join(dir, "corpus"), filepath.Join(dir, "acked.tsv"), state, filepath.Join(dir, "samples.tsv"), "", "")
	if err != nil {
		t.Fatal(err)
	}
	if s.Acked != 4 || s.Expected != 3 || s.Rows != 2 || s.Lost != 1 || len(s.LostSample) != 1 || s.LostSample[0] != "Q4" || s.SpoolLeft != 1 || s.OK {
		t.Errorf("summary %+v", s)
	}
}
