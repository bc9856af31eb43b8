package acked

import (
	"bytes"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

func TestWriteRead(t *testing.T) {
	want := []Entry{{"Q1", "a.eml", "accept"}, {"Q2", "b.eml", "reject"}, {"Q3", "a.eml", "tempfail"}}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, e := range want {
		if err := w.Write(e); err != nil {
			t.Fatal(err)
		}
	}
	if got := buf.String(); got != "Q1\ta.eml\taccept\nQ2\tb.eml\treject\nQ3\ta.eml\ttempfail\n" {
		t.Errorf("written %q", got)
	}
	got, err := Read(&buf, "acked.tsv")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("read %v, want %v", got, want)
	}
}

func TestReadErrors(t *testing.T) {
	tests := []struct {
		name, in, err string
	}{
		{"two fields", "Q1\ta.eml\taccept\nQ2\tb.eml\n", "acked.tsv line 2: want queue-id, file, verdict"},
		{"four fields", "Q1\ta.eml\taccept\tx\n", "acked.tsv line 1: want queue-id, file, verdict"},
		{"empty line", "\n", "acked.tsv line 1: want queue-id"},
		{"queue id twice", "Q1\ta.eml\taccept\nQ1\tb.eml\taccept\n", "acked.tsv line 2: queue id Q1 acknowledged twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			es, err := Read(strings.NewReader(tt.in), "acked.tsv")
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Read = %v, %v; want error %q", es, err, tt.err)
			}
		})
	}
	if es, err := Read(strings.NewReader(""), "acked.tsv"); err != nil || len(es) != 0 {
		t.Errorf("empty file: %v, %v", es, err)
	}
}

func TestWriteRefusesSeparators(t *testing.T) {
	var buf bytes.Buffer
	for _, e := range []Entry{{"Q\t1", "a.eml", "accept"}, {"Q1", "a\n.eml", "accept"}, {"Q1", "a.eml", "acc\rept"}} {
		if err := NewWriter(&buf).Write(e); err == nil {
			t.Errorf("Write(%q) accepted", e)
		}
	}
	if buf.Len() != 0 {
		t.Errorf("written %q", buf.String())
	}
}

// Concurrent writers never interleave lines; the file appends across
// openings and is complete after Close.
func TestAppendConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "acked.tsv")
	for round := 0; round < 2; round++ {
		f, err := Append(path)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 500; i++ {
					if err := f.Write(Entry{fmt.Sprintf("Q%d-%d-%d", round, g, i), "m.eml", "accept"}); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	es, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2*8*500 {
		t.Errorf("%d entries, want %d", len(es), 2*8*500)
	}
	if _, err := ReadFile(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing file read without error")
	}
}
