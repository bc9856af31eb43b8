package report

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

var day = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

func pol(domain string) PolicyPublished {
	return PolicyPublished{Domain: domain, DiscoveryMethod: "treewalk", ADKIM: "r", ASPF: "r",
		P: "reject", Testing: "n", Pct: -1, RUA: []URI{{Address: "mailto:dmarc@" + domain}}}
}

func rec(at time.Duration, ip, from string, p PolicyPublished) Record {
	return Record{Time: day.Add(at), Reporter: "mx1.receiver.example", SourceIP: ip,
		HeaderFrom: from, EnvelopeFrom: from, EnvelopeTo: []string{"receiver.example"},
		SPF:    []SPFResult{{Domain: from, Scope: "mfrom", Result: "pass"}},
		DKIM:   []DKIMResult{{Domain: from, Selector: "s1", Result: "pass"}},
		Policy: p, Disposition: "pass", DKIMAligned: "pass", SPFAligned: "pass", DMARCResult: "pass"}
}

func entries(recs ...Record) []Entry {
	es := make([]Entry, len(recs))
	for i, r := range recs {
		es[i] = Entry{ID: fmt.Sprintf("id%03d", i), Record: r}
	}
	return es
}

func TestCheckPeriodAndPeriodOf(t *testing.T) {
	tests := []struct {
		p          time.Duration
		at         time.Time
		begin, end time.Time
		bad        bool
	}{
		{0, day.Add(13 * time.Hour), day, day.Add(24 * time.Hour), false},
		{24 * time.Hour, day.Add(24*time.Hour - time.Nanosecond), day, day.Add(24 * time.Hour), false},
		{6 * time.Hour, day.Add(13 * time.Hour), day.Add(12 * time.Hour), day.Add(18 * time.Hour), false},
		{time.Hour, day.Add(90 * time.Minute), day.Add(time.Hour), day.Add(2 * time.Hour), false},
		// A local time is a UTC instant: periods stay on UTC boundaries.
		{24 * time.Hour, day.Add(23 * time.Hour).In(time.FixedZone("X", 3*3600)), day, day.Add(24 * time.Hour), false},
		{5 * time.Hour, day, time.Time{}, time.Time{}, true},    // does not divide 24h
		{30 * time.Minute, day, time.Time{}, time.Time{}, true}, // below 1h
		{48 * time.Hour, day, time.Time{}, time.Time{}, true},
	}
	for _, tt := range tests {
		p, err := CheckPeriod(tt.p)
		if tt.bad {
			if !errors.Is(err, ErrBadPeriod) {
				t.Errorf("CheckPeriod(%v) = %v, want ErrBadPeriod", tt.p, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("CheckPeriod(%v): %v", tt.p, err)
		}
		b, e := PeriodOf(tt.at, p)
		if !b.Equal(tt.begin) || !e.Equal(tt.end) {
			t.Errorf("PeriodOf(%v, %v) = %v..%v, want %v..%v", tt.at, p, b, e, tt.begin, tt.end)
		}
	}
}

func TestBuildGroupsPerPolicyDomainAndPeriod(t *testing.T) {
	a, b := pol("a.example"), pol("b.example")
	bStrict := b
	bStrict.ADKIM = "s" // another configuration of the same domain
	fail := rec(3*time.Hour, "192.0.2.9", "a.example", a)
	fail.Disposition, fail.DKIMAligned, fail.SPFAligned, fail.DMARCResult = "reject", "fail", "fail", "fail"
	fail.DKIM = nil
	sub := rec(4*time.Hour, "192.0.2.1", "sub.a.example", a) // RFC 9990 §3.1.2: own record, same report
	mapped := rec(5*time.Hour, "::ffff:192.0.2.1", "a.example", a)
	temp := rec(time.Hour, "192.0.2.1", "a.example", a)
	temp.DMARCResult = "temperror"
	none := rec(time.Hour, "192.0.2.1", "c.example", PolicyPublished{})
	none.DMARCResult = "none"
	noRUA := rec(time.Hour, "192.0.2.1", "d.example", pol("d.example"))
	noRUA.Policy.RUA = nil
	badIP := rec(time.Hour, "not-an-ip", "a.example", a)

	es := entries(
		rec(time.Hour, "192.0.2.1", "a.example", a),
		rec(2*time.Hour, "192.0.2.1", "a.example", a),
		mapped, // same row as the two above once unmapped
		fail, sub,
		rec(25*time.Hour, "192.0.2.1", "a.example", a), // next day
		rec(time.Hour, "198.51.100.7", "b.example", b),
		rec(time.Hour, "198.51.100.7", "b.example", bStrict),
		temp, none, noRUA, badIP,
	)
	reps, skipped, err := Build(es, Options{Receiver: "receiver.example", Email: "dmarc@receiver.example"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range reps {
		var rows []string
		for _, row := range r.Rows {
			rows = append(rows, fmt.Sprintf("%s/%s/%s=%d", row.SourceIP, row.HeaderFrom, row.Disposition, row.Count))
		}
		got = append(got, fmt.Sprintf("%s %s adkim=%s [%s] ids=%d", r.Begin.Format("01-02"), r.Policy.Domain,
			r.Policy.ADKIM, strings.Join(rows, " "), len(r.EntryIDs)))
	}
	want := []string{
		"03-01 a.example adkim=r [192.0.2.1/a.example/pass=3 192.0.2.9/a.example/reject=1 192.0.2.1/sub.a.example/pass=1] ids=5",
		"03-01 b.example adkim=r [198.51.100.7/b.example/pass=1] ids=1",
		"03-01 b.example adkim=s [198.51.100.7/b.example/pass=1] ids=1",
		"03-02 a.example adkim=r [192.0.2.1/a.example/pass=1] ids=1",
	}
	// The two b.example reports differ only by their hashed Report-ID; sort for a stable compare.
	if got[1] > got[2] {
		got[1], got[2] = got[2], got[1]
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("reports:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(skipped) != 4 {
		t.Fatalf("skipped %d records, want 4 (temperror, none, no rua, bad ip): %v", len(skipped), skipped)
	}
	for _, s := range skipped {
		if !errors.Is(s.Err, ErrNotReportable) {
			t.Errorf("skipped %s: %v is not ErrNotReportable", s.ID, s.Err)
		}
	}
	total := 0
	for _, r := range reps {
		total += r.Messages()
	}
	if total != len(es)-len(skipped) {
		t.Errorf("reports count %d messages, want %d", total, len(es)-len(skipped))
	}
}

func TestBuildRowFields(t *testing.T) {
	a := pol("a.example")
	r := rec(time.Hour, "2001:db8::25", "A.Example", a)
	r.EnvelopeFrom = ""
	r.SPF = []SPFResult{{Domain: "helo.example", Scope: "helo", Result: "pass"}} // HELO is never reported
	r.Overrides = []Override{{Type: "Trusted_Forwarder", Comment: "fwd"}}
	r.Disposition = "Discard" // outside the schema: reported as none
	r.DKIM = []DKIMResult{
		{Domain: "other.example", Selector: "x", Result: "fail"},
		{Domain: "esp.example", Selector: "e", Result: "pass"},
		{Domain: "mail.a.example", Selector: "m", Result: "pass"},
		{Domain: "a.example", Selector: "s", Result: "pass"},
	}
	reps, _, err := Build(entries(r), Options{Receiver: "receiver.example"})
	if err != nil || len(reps) != 1 {
		t.Fatalf("Build = %v, %v", reps, err)
	}
	row := reps[0].Rows[0]
	var dk []string
	for _, d := range row.DKIM {
		dk = append(dk, d.Domain)
	}
	// RFC 9990 §3.1.3 order: strict pass, relaxed pass, other pass, the rest.
	if got := strings.Join(dk, ","); got != "a.example,mail.a.example,esp.example,other.example" {
		t.Errorf("DKIM order %s", got)
	}
	if row.HeaderFrom != "a.example" || row.EnvelopeFrom != "" || len(row.SPF) != 0 ||
		row.Disposition != "none" || row.Overrides[0].Type != "trusted_forwarder" || row.EnvelopeTo != "" {
		t.Errorf("row = %+v", row)
	}
	if reps[0].OrgName != "receiver.example" {
		t.Errorf("OrgName defaults to the receiver, got %q", reps[0].OrgName)
	}

	// envelope_to: only with the option and one recipient domain.
	r2 := rec(time.Hour, "192.0.2.1", "a.example", a)
	r3 := rec(time.Hour, "192.0.2.1", "a.example", a)
	r3.EnvelopeTo = []string{"x.example", "y.example"}
	reps, _, _ = Build(entries(r2, r3), Options{Receiver: "receiver.example", EnvelopeTo: true})
	if len(reps[0].Rows) != 2 || reps[0].Rows[0].EnvelopeTo != "receiver.example" || reps[0].Rows[1].EnvelopeTo != "" {
		t.Errorf("envelope_to rows = %+v", reps[0].Rows)
	}
}

func TestBuildCapsDKIMAt100(t *testing.T) {
	r := rec(time.Hour, "192.0.2.1", "a.example", pol("a.example"))
	r.DKIM = nil
	for i := 0; i < 150; i++ {
		res := "fail"
		if i == 149 {
			res = "pass" // the only pass comes last in the header and must survive the cap
		}
		r.DKIM = append(r.DKIM, DKIMResult{Domain: fmt.Sprintf("d%d.example", i), Selector: "s", Result: res})
	}
	reps, _, _ := Build(entries(r), Options{Receiver: "receiver.example"})
	got := reps[0].Rows[0].DKIM
	if len(got) != MaxDKIMPerRow || got[0].Domain != "d149.example" {
		t.Errorf("got %d DKIM results, first %q; want %d, first d149.example", len(got), got[0].Domain, MaxDKIMPerRow)
	}
}

func TestReportIDAndNames(t *testing.T) {
	a := pol("a.example")
	es := entries(rec(time.Hour, "192.0.2.1", "a.example", a), rec(2*time.Hour, "192.0.2.2", "a.example", a))
	o := Options{Receiver: "receiver.example"}
	r1, _, _ := Build(es, o)
	r2, _, _ := Build([]Entry{es[1], es[0]}, o) // a re-send of the same records, in another order
	if r1[0].ID != r2[0].ID {
		t.Errorf("re-send changed the Report-ID: %s vs %s", r1[0].ID, r2[0].ID)
	}
	late, _, _ := Build([]Entry{{ID: "id999", Record: es[0].Record}}, o) // records that came after a report
	if late[0].ID == r1[0].ID {
		t.Errorf("late records reuse Report-ID %s", late[0].ID)
	}
	other, _, _ := Build(es, Options{Receiver: "other.example"})
	if other[0].ID == r1[0].ID {
		t.Errorf("another receiver reuses Report-ID %s", r1[0].ID)
	}
	if !regexp.MustCompile(`^[A-Za-z0-9]+$`).MatchString(r1[0].ID) {
		t.Errorf("Report-ID %q is not 1*(ALPHA / DIGIT) (RFC 9990 §3.5.2 unique-id)", r1[0].ID)
	}
	wantFile := fmt.Sprintf("receiver.example!a.example!%d!%d!%s.xml.gz", day.Unix(), day.Unix()+86399, r1[0].ID)
	if got := r1[0].Filename(); got != wantFile {
		t.Errorf("Filename = %s, want %s", got, wantFile)
	}
	wantSubj := "Report Domain: a.example Submitter: receiver.example Report-ID: " + r1[0].ID
	if got := r1[0].Subject(); got != wantSubj {
		t.Errorf("Subject = %s, want %s", got, wantSubj)
	}
}

func TestBuildRejectsBadPeriod(t *testing.T) {
	if _, _, err := Build(nil, Options{Period: 7 * time.Hour}); !errors.Is(err, ErrBadPeriod) {
		t.Errorf("Build with 7h = %v, want ErrBadPeriod", err)
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		bad  bool
	}{
		{"", 0, false}, {"500", 500, false}, {"10k", 10 << 10, false}, {"10m", 10 << 20, false},
		{"1G", 1 << 30, false}, {"2t", 2 << 40, false}, {"x", 0, true}, {"m", 0, true}, {"-1", 0, true},
		{"99999999999999999999", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, bad=%v", tt.in, got, err, tt.want, tt.bad)
		}
	}
}
