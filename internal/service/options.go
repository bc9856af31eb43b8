package service

import (
	"log/slog"

	"github.com/authmilter/authmilter/internal/config"
	"github.com/authmilter/authmilter/internal/policy"
	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/authmilter/authmilter/internal/store"
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
		MultiFrom: cfg.DMARC.MultiFrom, MaxAuthorDomains: cfg.DMARC.MaxAuthorDomains,
		MaxHeaderBytes: cfg.Milter.MaxHeaderBytes, MaxHeaders: cfg.Milter.MaxHeaders,
		MessageBudget: cfg.DNS.MessageBudget.Duration,
	}
}

// ResolverConfig maps the [dns] section onto the resolver's settings: the
// one place serve, verify, check-dns, the report scheduler, the profiler
// and the tests take them from. dns.cache_size = 0 means no cache, which
// the resolver spells -1 (its 0 is its default size).
func ResolverConfig(cfg *config.Config) resolver.Config {
	cacheSize := cfg.DNS.CacheSize
	if cacheSize == 0 {
		cacheSize = -1
	}
	return resolver.Config{Servers: cfg.DNS.Servers, Timeout: cfg.DNS.Timeout.Duration,
		Attempts: cfg.DNS.Attempts, CacheSize: cacheSize, CacheBytes: cfg.DNS.CacheBytes}
}

// Deps are what New does not make from the configuration.
type Deps struct {
	Resolver engine.Resolver // the daemon's one resolver
	Log      *slog.Logger    // nil: nothing is logged
	Records  *store.Recorder // nil: no records
	Observe  Observer        // nil: no metrics
	// EditEngine, when not nil, changes the engine's options before the
	// engine is made (tests and benchmarks).
	EditEngine func(*engine.Options)
}

// New builds the Service a validated configuration describes: the policy,
// the engine on d.Resolver with EngineOptions, Received-SPF and the
// signing half (reading the key files). serve, verify, the test milter and
// the profiler all build it here. Incoming report ingestion and failure
// reports, which need the daemon's store and sender, are set by serve.
func New(cfg *config.Config, d Deps) (*Service, error) {
	pol, err := policy.New(cfg)
	if err != nil {
		return nil, err
	}
	log := d.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	eo := EngineOptions(cfg)
	if d.EditEngine != nil {
		d.EditEngine(&eo)
	}
	svc := &Service{AuthservID: cfg.AuthservID, Engine: engine.New(d.Resolver, eo), Policy: pol,
		ReceivedSPF: cfg.SPF.ReceivedSPFHeader, Log: log, Records: d.Records, Observe: d.Observe}
	if svc.Signing, err = NewSigning(cfg.Signing, cfg.Milter, log); err != nil {
		return nil, err
	}
	return svc, nil
}
