package soak

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// summary is the part of soakcheck's JSON summary the test reads.
type summary struct {
	Acked      int64    `json:"acked"`
	Expected   int64    `json:"expected_records"`
	Rows       int64    `json:"rows"`
	Lost       int64    `json:"records_lost"`
	Duplicated int64    `json:"records_duplicated"`
	SpoolLeft  int      `json:"spool_files_left"`
	MaxPerSec  float64  `json:"max_messages_per_second"`
	LoadPerSec float64  `json:"load_messages_per_second"`
	LoadMsgs   int64    `json:"load_messages"`
	Dropped    int64    `json:"load_dropped_connections"`
	Errors     int64    `json:"load_errors"`
	Conns      int64    `json:"load_connections"`
	Growth     []string `json:"growth"`
	OK         bool     `json:"ok"`
	Samples    []struct {
		Phase      string `json:"phase"`
		Goroutines int64  `json:"goroutines"`
		FDs        int64  `json:"fds"`
	} `json:"samples"`
}

// TestSoakShort runs soak.sh in its short mode (about 45 s of load: 8 s
// unpaced to measure the maximum, 30 s paced at 80 % of it, 5 % of the
// connections dropped at a random packet) against the real binary built
// from this tree, and checks what soakcheck found: no acknowledged message
// without its record, none recorded twice, goroutines and fds back to
// their idle level after the load and not growing under it, no load error.
func TestSoakShort(t *testing.T) {
	out := t.TempDir()
	cmd := exec.Command("./soak.sh")
	cmd.Env = append(os.Environ(), "SOAK_DURATION=30s", "SOAK_MAX_DURATION=8s", "SOAK_SAMPLE=3s",
		"SOAK_DROP=0.05", "SOAK_OUT="+out)
	combined, err := cmd.CombinedOutput()
	t.Logf("soak.sh:\n%s", combined)
	data, rerr := os.ReadFile(filepath.Join(out, "summary.json"))
	if rerr != nil {
		t.Fatalf("no summary (soak.sh: %v): %v", err, rerr)
	}
	var s summary
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Errorf("soak.sh failed: %v", err)
	}
	if s.Lost != 0 || s.Duplicated != 0 {
		t.Errorf("records lost %d, duplicated %d (of %d expected)", s.Lost, s.Duplicated, s.Expected)
	}
	// Not vacuous: the run carried mail, most of it with records, and
	// connections were really dropped.
	if s.Expected < 1000 || s.Rows < s.Expected || s.LoadMsgs == 0 {
		t.Errorf("acked %d, expected records %d, rows %d, paced messages %d", s.Acked, s.Expected, s.Rows, s.LoadMsgs)
	}
	if s.Dropped == 0 || s.Dropped >= s.Conns {
		t.Errorf("dropped %d of %d connections", s.Dropped, s.Conns)
	}
	if s.Errors != 0 {
		t.Errorf("%d load errors", s.Errors)
	}
	if len(s.Growth) > 0 {
		t.Errorf("not flat:\n%s", strings.Join(s.Growth, "\n"))
	}
	var load int
	for _, x := range s.Samples {
		if x.Phase == "load" {
			load++
		}
		if x.Goroutines <= 0 || x.FDs <= 0 {
			t.Errorf("sample without figures: %+v", x)
		}
	}
	if load < 4 {
		t.Errorf("%d samples under load", load)
	}
	if !s.OK {
		t.Error("soakcheck: not OK")
	}
}
