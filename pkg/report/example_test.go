package report_test

import (
	"fmt"
	"time"

	"github.com/authmilter/authmilter/pkg/report"
)

// Records the milter kept become one aggregate report per policy domain
// and period; its XML reads back with the reader that incoming reports go
// through.
func Example() {
	day := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	rec := report.Record{
		Time: day.Add(9 * time.Hour), Reporter: "mx.example.net", SourceIP: "192.0.2.1",
		HeaderFrom: "example.org", EnvelopeFrom: "example.org",
		SPF:  []report.SPFResult{{Domain: "example.org", Scope: "mfrom", Result: "pass"}},
		DKIM: []report.DKIMResult{{Domain: "example.org", Selector: "s1", Result: "pass"}},
		Policy: report.PolicyPublished{Domain: "example.org", DiscoveryMethod: "treewalk", ADKIM: "r", ASPF: "r",
			P: "reject", Testing: "n", Pct: -1, RUA: []report.URI{{Address: "mailto:dmarc@example.org"}}},
		Disposition: "pass", DKIMAligned: "pass", SPFAligned: "pass", DMARCResult: "pass",
	}
	entries := []report.Entry{{ID: "1", Record: rec}, {ID: "2", Record: rec}}
	reps, _, err := report.Build(entries, report.Options{Receiver: "example.net", Email: "dmarc-reports@example.net"})
	if err != nil {
		fmt.Println(err)
		return
	}
	xml, err := reps[0].XML(report.FormatRFC9990)
	if err != nil {
		fmt.Println(err)
		return
	}
	back, err := report.ReadXML(xml, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(reps[0].Subject())
	fmt.Println(back.Policy.Domain, len(back.Rows), "row,", back.Rows[0].Count, "messages from", back.Rows[0].SourceIP)
	// Output:
	// Report Domain: example.org Submitter: example.net Report-ID: 2026120600bcd5160ae5d823c0
	// example.org 1 row, 2 messages from 192.0.2.1
}
