package config

import (
	"fmt"

	"github.com/authmilter/authmilter/pkg/identity"
)

// ARC configures validation of the Authenticated Received Chain of
// forwarded mail (RFC 8617) and the sealers whose word is trusted when
// DMARC fails (RFC 8617 §7.2, RFC 9989 §5.4).
type ARC struct {
	Enabled bool `toml:"enabled"`
	// MaxSets is the cost cap: a chain of more ARC sets is not verified
	// and reported arc=fail (each set costs two signature checks).
	MaxSets int `toml:"max_sets"`
	// TrustedSealers are the ARC-Seal d= domains whose recorded DMARC
	// pass overrides a local DMARC fail; empty trusts nobody.
	TrustedSealers []string `toml:"trusted_sealers"`
}

func defaultARC() ARC { return ARC{Enabled: true, MaxSets: 10, TrustedSealers: []string{}} }

func (c *Config) validateARC() Errors {
	var es Errors
	if c.ARC.MaxSets < 1 || c.ARC.MaxSets > 50 {
		es = append(es, Error{Key: "arc.max_sets", Msg: "must be between 1 and 50 (RFC 8617 allows 50 sets)"})
	}
	for _, d := range c.ARC.TrustedSealers {
		if _, err := identity.ASCII(d); err != nil {
			es = append(es, Error{Key: "arc.trusted_sealers", Msg: fmt.Sprintf("%q is not a domain name", d)})
		}
	}
	return es
}

// normalizeARC puts the trusted sealers in the form they are compared in.
func (c *Config) normalizeARC() {
	for i, d := range c.ARC.TrustedSealers {
		c.ARC.TrustedSealers[i], _ = identity.ASCII(d)
	}
}
