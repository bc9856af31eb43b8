package service

import (
	"github.com/authmilter/authmilter/internal/config"
	"github.com/authmilter/authmilter/pkg/arc"
	"github.com/authmilter/authmilter/pkg/dkimverify"
	"github.com/authmilter/authmilter/pkg/dmarc"
	"github.com/authmilter/authmilter/pkg/engine"
)

// EngineOptions maps a validated configuration onto the engine's settings:
// the one place serve, verify, the benchmarks and the tests take them from.
func EngineOptions(cfg *config.Config) engine.Options {
	return engine.Options{
		SPF: cfg.SPF.Enabled, CheckHELO: cfg.SPF.CheckHELO, SPFTimeout: cfg.SPF.Timeout.Duration,
		DKIM: cfg.DKIM.Enabled,
		DKIMOptions: dkimverify.Options{MinRSABits: cfg.DKIM.MinRSABits, MaxSignatures: cfg.DKIM.MaxSignatures,
			ClockDrift: cfg.DKIM.ClockDrift.Duration, BodyLength: dkimverify.BodyLength(cfg.DKIM.BodyLength)},
		ARC: cfg.ARC.Enabled, ARCOptions: arc.Options{MinRSABits: cfg.DKIM.MinRSABits, MaxSets: cfg.ARC.MaxSets},
		DMARC: cfg.DMARC.Enabled, DMARCMode: dmarc.Mode(cfg.DMARC.Mode),
		MultiFrom: engine.MultiFrom(cfg.DMARC.MultiFrom), MaxAuthorDomains: cfg.DMARC.MaxAuthorDomains,
		MaxHeaderBytes: cfg.Milter.MaxHeaderBytes, MaxHeaders: cfg.Milter.MaxHeaders,
		MessageBudget: cfg.DNS.MessageBudget.Duration,
	}
}
