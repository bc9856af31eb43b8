package dmarc_test

import (
	"fmt"

	"github.com/authmilter/authmilter/pkg/dmarc"
)

// The author domains of a message's From fields, in the form DMARC compares
// them (lowercase, A-labels), and a policy record as published.
func ExampleAuthorDomains() {
	ds, err := dmarc.AuthorDomains([]string{" Jane <jane@Bücher.example>, bob@EXAMPLE.org"})
	fmt.Println(ds, err)

	rec, err := dmarc.ParseRecord("v=DMARC1; p=reject; adkim=s; rua=mailto:dmarc@example.org")
	fmt.Println(rec.Policy, string(rec.ADKIM), rec.RUA[0].Address, err)
	// Output:
	// [xn--bcher-kva.example example.org] <nil>
	// reject s mailto:dmarc@example.org <nil>
}
