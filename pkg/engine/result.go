package engine

import (
	"time"

	"github.com/authmilter/authmilter/pkg/arc"
	"github.com/authmilter/authmilter/pkg/dkimverify"
	"github.com/authmilter/authmilter/pkg/dmarc"
	"github.com/authmilter/authmilter/pkg/spfcheck"
)

// Result is everything the checks found about one message, as plain values.
// Zero values mean "not checked".
type Result struct {
	Envelope Envelope

	SPF  spfcheck.Result // MAIL FROM identity (postmaster@HELO for the null sender)
	HELO spfcheck.Result // HELO identity; never used by DMARC
	DKIM []dkimverify.Result
	ARC  arc.Result // Status "" when ARC is off

	AuthorDomains []string // from the RFC5322.From field(s), lowercase A-labels
	ShownDomains  []string // domains of addresses in display names, comments, encoded-words; evaluated too
	FromProblem   string   // set when there was not exactly one From domain
	// FromUnusable: the From cannot be judged (none, several fields,
	// unreadable, too many domains); DMARC is permerror and local policy
	// rejects by default.
	FromUnusable bool
	DMARC        dmarc.Result // the result that decides (the strictest, with several domains)
	DMARCAll     []dmarc.Result

	HeaderTooLarge bool
	Duration       time.Duration
}
