// Command soakcheck judges a soak run (integration/soak/soak.sh): every
// message whose end-of-message reply the load generator received must have
// exactly one record in the store when its author domain publishes a DMARC
// record with rua (internal/store keeps only those), and the daemon's RSS,
// goroutines and open file descriptors must stay flat. It prints a summary
// (JSON with -json) and exits 1 when a record is lost or a figure grew.
//
//	soakcheck -corpus DIR -acked acked.tsv -state DIR -samples samples.tsv [-max max.json -load load.json] [-json] [-summary FILE]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/authmilter/authmilter/integration/internal/acked"
	"github.com/authmilter/authmilter/internal/store"
)

// Slack for "flat": growth from the first half of the loaded samples to
// the second half, and from idle before the load to idle after it, beyond
// which the run fails. Under load goroutines and fds move with the
// sessions in flight at the moment of a sample (16 sessions: up to ~6
// goroutines each while SPF, DKIM and DMARC look up in parallel, and 1 fd),
// RSS with the garbage collector's cycle; a leak per dropped connection
// shows in a long run under load and, in any run, in the strict idle
// comparison.
const (
	slackGoroutines = 96
	slackFDs        = 20
	slackRSSKiB     = 24 << 10 // plus 20 %
	idleGoroutines  = 8
	idleFDs         = 4
)

// Sample is one line of samples.tsv.
type Sample struct {
	Time       string `json:"time"`
	Seconds    int    `json:"seconds"` // since the daemon started
	Phase      string `json:"phase"`   // idle-start, max, load, idle-end
	RSSKiB     int64  `json:"rss_kib"`
	Goroutines int64  `json:"goroutines"`
	FDs        int64  `json:"fds"`
}

// Summary is what soakcheck found.
type Summary struct {
	Acked          int64    `json:"acked"`            // end-of-message replies received (all phases)
	Expected       int64    `json:"expected_records"` // of those, with a rua author domain
	Rows           int64    `json:"rows"`             // records in the store
	Lost           int64    `json:"records_lost"`     // expected without a row
	Duplicated     int64    `json:"records_duplicated"`
	Unacked        int64    `json:"rows_without_ack"` // dropped after the EOM was sent: allowed
	LostSample     []string `json:"lost_sample,omitempty"`
	SpoolLeft      int      `json:"spool_files_left"` // before soakcheck opened the store
	MaxPerSecond   float64  `json:"max_messages_per_second,omitempty"`
	LoadPerSecond  float64  `json:"load_messages_per_second,omitempty"`
	LoadMessages   int64    `json:"load_messages,omitempty"`
	LoadSeconds    float64  `json:"load_seconds,omitempty"`
	LoadDropped    int64    `json:"load_dropped_connections,omitempty"`
	LoadErrors     int64    `json:"load_errors"`
	LoadConns      int64    `json:"load_connections,omitempty"`
	LoadP99        float64  `json:"load_eom_p99_ms,omitempty"`
	PeakRSSKiB     int64    `json:"peak_rss_kib"`
	Samples        []Sample `json:"samples"`
	Growth         []string `json:"growth,omitempty"` // what was not flat
	OK             bool     `json:"ok"`
	GoroutinesLoad [2]int64 `json:"goroutines_load_first_last"`
	FDsLoad        [2]int64 `json:"fds_load_first_last"`
	RSSLoad        [2]int64 `json:"rss_kib_load_first_last"`
}

func main() {
	os.Exit(cli(os.Args[1:], os.Stdout, os.Stderr))
}

func cli(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("soakcheck", flag.ContinueOnError)
	fl.SetOutput(stderr)
	corpus := fl.String("corpus", "", "corpus directory (index.tsv, zone.txt, messages)")
	acked := fl.String("acked", "", "milterload -acked file")
	state := fl.String("state", "", "the daemon's store directory (records.db, spool files)")
	samples := fl.String("samples", "", "samples.tsv written by soak.sh")
	maxRep := fl.String("max", "", "milterload -json report of the unpaced run (optional)")
	loadRep := fl.String("load", "", "milterload -json report of the paced run (optional)")
	asJSON := fl.Bool("json", false, "print the summary as JSON")
	jsonPath := fl.String("summary", "", "also write the summary as JSON to this file")
	if err := fl.Parse(args); err != nil {
		return 2
	}
	if *corpus == "" || *acked == "" || *state == "" || *samples == "" || fl.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: soakcheck -corpus DIR -acked FILE -state DIR -samples FILE [-max FILE] [-load FILE] [-json] [-summary FILE]")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := check(ctx, *corpus, *acked, *state, *samples, *maxRep, *loadRep)
	if err != nil {
		fmt.Fprintln(stderr, "soakcheck:", err)
		return 1
	}
	if *jsonPath != "" {
		data, err := json.MarshalIndent(s, "", "  ")
		if err == nil {
			err = os.WriteFile(*jsonPath, append(data, '\n'), 0o644)
		}
		if err != nil {
			fmt.Fprintln(stderr, "soakcheck:", err)
			return 1
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(s); err != nil {
			fmt.Fprintln(stderr, "soakcheck:", err)
			return 1
		}
	} else {
		printSummary(stdout, s)
	}
	if !s.OK {
		return 1
	}
	return 0
}

func check(ctx context.Context, corpus, ackedPath, state, samples, maxRep, loadRep string) (*Summary, error) {
	s := &Summary{}
	ruaDomains, err := ruaPolicies(filepath.Join(corpus, "zone.txt"))
	if err != nil {
		return nil, err
	}
	fromOf, err := authorDomains(corpus)
	if err != nil {
		return nil, err
	}
	// Queue id -> whether a record is expected.
	want := map[string]bool{}
	entries, err := acked.ReadFile(ackedPath) // also: no queue id twice
	if err != nil {
		return nil, err
	}
	for n, e := range entries {
		from, ok := fromOf[e.File]
		if !ok {
			return nil, fmt.Errorf("%s line %d: %s is not in the corpus", ackedPath, n+1, e.File)
		}
		s.Acked++
		want[e.QueueID] = hasRUA(ruaDomains, from)
		if want[e.QueueID] {
			s.Expected++
		}
	}
	if s.Expected == 0 {
		return nil, errors.New("no acknowledged message has a record to check: wrong corpus or an empty run")
	}

	spools, _ := filepath.Glob(filepath.Join(state, "spool-*.jsonl"))
	s.SpoolLeft = len(spools)
	// Opening the store starts the replay of spool files in the
	// background: a spooled record is kept, not lost, once its file is
	// replayed and removed. Count only then.
	st, err := store.Open(ctx, store.Options{Backend: store.SQLite, SQLitePath: filepath.Join(state, "records.db"), SpoolDir: state})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		left, _ := filepath.Glob(filepath.Join(state, "spool-*.jsonl"))
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d spool files not replayed after a minute", len(left))
		}
	}
	got := map[string]int{}
	err = st.Each(ctx, store.Query{}, func(r store.Row) error {
		got[r.Record.QueueID]++
		s.Rows++
		return nil
	})
	if err != nil {
		return nil, err
	}
	for q, expect := range want {
		switch n := got[q]; {
		case expect && n == 0:
			s.Lost++
			if len(s.LostSample) < 10 {
				s.LostSample = append(s.LostSample, q)
			}
		case n > 1:
			s.Duplicated++
		case !expect && n > 0:
			return nil, fmt.Errorf("queue id %s has a record though its author domain has no rua: the checker's rule is wrong", q)
		}
	}
	for q, n := range got {
		if _, ok := want[q]; !ok {
			s.Unacked++
			if n > 1 {
				s.Duplicated++
			}
		}
	}

	if s.Samples, err = readSamples(samples); err != nil {
		return nil, err
	}
	s.Growth = flat(s)
	if maxRep != "" {
		var r loadReport
		if err := readJSON(maxRep, &r); err != nil {
			return nil, err
		}
		s.MaxPerSecond = r.PerSecond
	}
	if loadRep != "" {
		var r loadReport
		if err := readJSON(loadRep, &r); err != nil {
			return nil, err
		}
		s.LoadPerSecond, s.LoadMessages, s.LoadSeconds = r.PerSecond, r.Messages, r.Seconds
		s.LoadDropped, s.LoadErrors, s.LoadConns, s.LoadP99 = r.Dropped, r.Errors, r.Connections, r.EOM.P99
	}
	s.OK = s.Lost == 0 && s.Duplicated == 0 && len(s.Growth) == 0 && s.LoadErrors == 0
	return s, nil
}

// loadReport is the part of milterload's JSON report soakcheck reads.
type loadReport struct {
	Seconds     float64 `json:"seconds"`
	Messages    int64   `json:"messages"`
	Connections int64   `json:"connections"`
	Errors      int64   `json:"errors"`
	Dropped     int64   `json:"dropped"`
	PerSecond   float64 `json:"messages_per_second"`
	EOM         struct {
		P99 float64 `json:"p99_ms"`
	} `json:"eom_latency"`
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// flat compares the loaded samples' first half with their second half, and
// idle after the load with idle before it; it returns what grew.
func flat(s *Summary) []string {
	var load []Sample
	var idleStart, idleEnd *Sample
	for i, x := range s.Samples {
		s.PeakRSSKiB = max(s.PeakRSSKiB, x.RSSKiB)
		switch x.Phase {
		case "load":
			load = append(load, x)
		case "idle-start":
			idleStart = &s.Samples[i]
		case "idle-end":
			idleEnd = &s.Samples[i]
		}
	}
	var out []string
	if len(load) < 4 {
		return append(out, fmt.Sprintf("only %d samples under load (want at least 4)", len(load)))
	}
	s.GoroutinesLoad = [2]int64{load[0].Goroutines, load[len(load)-1].Goroutines}
	s.FDsLoad = [2]int64{load[0].FDs, load[len(load)-1].FDs}
	s.RSSLoad = [2]int64{load[0].RSSKiB, load[len(load)-1].RSSKiB}
	half := len(load) / 2
	peak := func(xs []Sample, f func(Sample) int64) int64 {
		var m int64
		for _, x := range xs {
			m = max(m, f(x))
		}
		return m
	}
	for _, c := range []struct {
		name  string
		f     func(Sample) int64
		limit func(int64) int64
	}{
		{"goroutines", func(x Sample) int64 { return x.Goroutines }, func(v int64) int64 { return v + slackGoroutines }},
		{"fds", func(x Sample) int64 { return x.FDs }, func(v int64) int64 { return v + slackFDs }},
		{"rss_kib", func(x Sample) int64 { return x.RSSKiB }, func(v int64) int64 { return v + v/5 + slackRSSKiB }},
	} {
		a, b := peak(load[:half], c.f), peak(load[half:], c.f)
		if b > c.limit(a) {
			out = append(out, fmt.Sprintf("%s: peak %d in the second half of the load, %d in the first (limit %d)", c.name, b, a, c.limit(a)))
		}
	}
	if idleStart == nil || idleEnd == nil {
		return append(out, "no idle sample before or after the load")
	}
	if idleEnd.Goroutines > idleStart.Goroutines+idleGoroutines {
		out = append(out, fmt.Sprintf("goroutines: %d idle after the load, %d before", idleEnd.Goroutines, idleStart.Goroutines))
	}
	if idleEnd.FDs > idleStart.FDs+idleFDs {
		out = append(out, fmt.Sprintf("fds: %d idle after the load, %d before", idleEnd.FDs, idleStart.FDs))
	}
	return out
}

// readSamples reads samples.tsv: time, seconds, phase, rss KiB,
// goroutines, fds; '#' lines are comments.
func readSamples(path string) ([]Sample, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []Sample
	for n, line := range strings.Split(string(data), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		c := strings.Split(line, "\t")
		if len(c) != 6 {
			return nil, fmt.Errorf("%s line %d: want 6 columns", path, n+1)
		}
		x := Sample{Time: c[0], Phase: c[2]}
		var nums [4]int64
		for i, v := range []string{c[1], c[3], c[4], c[5]} {
			if nums[i], err = strconv.ParseInt(v, 10, 64); err != nil {
				return nil, fmt.Errorf("%s line %d: %w", path, n+1, err)
			}
		}
		x.Seconds, x.RSSKiB, x.Goroutines, x.FDs = int(nums[0]), nums[1], nums[2], nums[3]
		out = append(out, x)
	}
	return out, nil
}

// ruaPolicies reads the zone and returns the names whose _dmarc TXT
// record has a rua tag.
func ruaPolicies(path string) (map[string]bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || !strings.HasPrefix(strings.ToLower(f[0]), "_dmarc.") || f[3] != "TXT" {
			continue
		}
		txt := strings.ReplaceAll(strings.Join(f[4:], " "), "\" \"", "")
		if !strings.Contains(txt, "v=DMARC1") {
			continue
		}
		for _, tag := range strings.Split(strings.Trim(txt, "\""), ";") {
			if k, _, ok := strings.Cut(strings.TrimSpace(tag), "="); ok && strings.EqualFold(strings.TrimSpace(k), "rua") {
				out[strings.TrimSuffix(strings.ToLower(f[0][len("_dmarc."):]), ".")] = true
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no DMARC record with rua", path)
	}
	return out, nil
}

// hasRUA: the domain or a parent below the top-level domain publishes a
// record with rua (RFC 9989 §4.10 tree walk, enough for the corpus's
// names).
func hasRUA(rua map[string]bool, domain string) bool {
	for d := domain; strings.Contains(d, "."); d = d[strings.IndexByte(d, '.')+1:] {
		if rua[d] {
			return true
		}
	}
	return false
}

// authorDomains maps each corpus file to the domain of its From address.
func authorDomains(corpus string) (map[string]string, error) {
	idx, err := os.Open(filepath.Join(corpus, "index.tsv"))
	if err != nil {
		return nil, err
	}
	defer idx.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(idx)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		file, _, _ := strings.Cut(line, "\t")
		d, err := fromDomain(filepath.Join(corpus, file))
		if err != nil {
			return nil, err
		}
		out[file] = d
	}
	return out, sc.Err()
}

// fromDomain returns the lowercase domain of the first address in the
// message's From field (the corpus has one author each).
func fromDomain(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || !strings.EqualFold(strings.TrimSpace(name), "From") {
			continue
		}
		at := strings.LastIndexByte(value, '@')
		if at < 0 {
			return "", fmt.Errorf("%s: From without an address", path)
		}
		d := value[at+1:]
		if end := strings.IndexAny(d, "> \t"); end >= 0 {
			d = d[:end]
		}
		return strings.ToLower(d), nil
	}
	return "", fmt.Errorf("%s: no From field", path)
}

func printSummary(w io.Writer, s *Summary) {
	fmt.Fprintf(w, "acknowledged   %d messages, %d with a rua author domain\n", s.Acked, s.Expected)
	fmt.Fprintf(w, "records        %d rows; lost %d, duplicated %d, rows of unacknowledged (dropped) messages %d; spool files left %d\n",
		s.Rows, s.Lost, s.Duplicated, s.Unacked, s.SpoolLeft)
	if s.LoadMessages > 0 {
		fmt.Fprintf(w, "load           %d messages in %.0f s = %.1f msg/s (max measured %.1f), %d connections, %d dropped, %d errors, EOM p99 %.1f ms\n",
			s.LoadMessages, s.LoadSeconds, s.LoadPerSecond, s.MaxPerSecond, s.LoadConns, s.LoadDropped, s.LoadErrors, s.LoadP99)
	}
	fmt.Fprintf(w, "under load     goroutines %d -> %d, fds %d -> %d, RSS %d -> %d KiB; peak RSS %d KiB\n",
		s.GoroutinesLoad[0], s.GoroutinesLoad[1], s.FDsLoad[0], s.FDsLoad[1], s.RSSLoad[0], s.RSSLoad[1], s.PeakRSSKiB)
	for _, g := range s.Growth {
		fmt.Fprintf(w, "NOT FLAT       %s\n", g)
	}
	for _, q := range s.LostSample {
		fmt.Fprintf(w, "lost           %s\n", q)
	}
	if s.OK {
		fmt.Fprintln(w, "result         OK")
	} else {
		fmt.Fprintln(w, "result         FAILED")
	}
}
