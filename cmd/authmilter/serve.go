package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	stdlog "log"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/authmilter/authmilter/internal/config"
	"github.com/authmilter/authmilter/internal/milter"
	"github.com/authmilter/authmilter/internal/policy"
	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/authmilter/authmilter/internal/service"
	"github.com/authmilter/authmilter/internal/store"
	"github.com/authmilter/authmilter/pkg/dkimverify"
	"github.com/authmilter/authmilter/pkg/dmarc"
	"github.com/authmilter/authmilter/pkg/engine"
)

func cmdCheckConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: authmilter check-config FILE")
		return 2
	}
	if _, err := config.Load(args[0]); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok\n", args[0])
	return 0
}

// loadConfig reads the file, or the embedded defaults for path "".
func loadConfig(path string) (*config.Config, error) {
	cfg := config.Default()
	if path != "" {
		var err error
		if cfg, err = config.Load(path); err != nil {
			return nil, err
		}
	}
	if cfg.AuthservID == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return nil, fmt.Errorf("authserv_id is empty and the host name is unknown: set authserv_id")
		}
		cfg.AuthservID = h
	}
	return cfg, nil
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level)) // validated before
	o := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}

// engineOptions maps the configuration onto the engine's settings.
func engineOptions(cfg *config.Config) engine.Options {
	return engine.Options{
		SPF: cfg.SPF.Enabled, CheckHELO: cfg.SPF.CheckHELO, SPFTimeout: cfg.SPF.Timeout.Duration,
		DKIM: cfg.DKIM.Enabled,
		DKIMOptions: dkimverify.Options{MinRSABits: cfg.DKIM.MinRSABits, MaxSignatures: cfg.DKIM.MaxSignatures,
			ClockDrift: cfg.DKIM.ClockDrift.Duration},
		DMARC: cfg.DMARC.Enabled, DMARCMode: dmarc.Mode(cfg.DMARC.Mode),
		MultiFrom: engine.MultiFrom(cfg.DMARC.MultiFrom), MaxAuthorDomains: cfg.DMARC.MaxAuthorDomains,
		MaxHeaderBytes: cfg.Milter.MaxHeaderBytes, MaxHeaders: cfg.Milter.MaxHeaders,
	}
}

// newResolver builds the one resolver from the [dns] section; log (may be
// nil) gets a debug line per query.
func newResolver(cfg *config.Config, log *slog.Logger) (*resolver.Resolver, error) {
	cacheSize := cfg.DNS.CacheSize
	if cacheSize == 0 {
		cacheSize = -1 // our 0 disables the cache; the resolver reads 0 as its default size
	}
	res, err := resolver.New(resolver.Config{
		Servers: cfg.DNS.Servers, Timeout: cfg.DNS.Timeout.Duration,
		Attempts: cfg.DNS.Attempts, CacheSize: cacheSize, Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	return res, nil
}

// newService builds everything a message needs from the configuration.
func newService(cfg *config.Config, log *slog.Logger) (*service.Service, error) {
	res, err := newResolver(cfg, log)
	if err != nil {
		return nil, err
	}
	pol, err := policy.New(cfg)
	if err != nil {
		return nil, err
	}
	return &service.Service{
		AuthservID: cfg.AuthservID, Engine: engine.New(res, engineOptions(cfg)), Policy: pol,
		ReceivedSPF: cfg.SPF.ReceivedSPFHeader, Log: log,
	}, nil
}

func cmdServe(args []string, stderr io.Writer) int {
	fl := flag.NewFlagSet("serve", flag.ContinueOnError)
	fl.SetOutput(stderr)
	cfgPath := fl.String("config", "", "configuration file (default: embedded defaults)")
	if err := fl.Parse(args); err != nil {
		return 2
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "authmilter:", err)
		return 1
	}
	log := newLogger(cfg, stderr)
	// go-milter logs through the standard logger: connection ends the MTA
	// caused are routine, anything else is worth a warning.
	stdlog.SetFlags(0)
	stdlog.SetOutput(libraryLog{log})
	svc, err := newService(cfg, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	st, err := openStore(cfg, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	if st != nil {
		defer st.Close() // after the sessions drained: their records are queued
		stopReports, err := startReporter(cfg, st, log)
		if err != nil {
			log.Error("cannot start", "err", err)
			return 1
		}
		// Deferred after st.Close, so the scheduler stops before the store closes.
		defer stopReports()
		ex, _ := store.ParseExclusions(cfg.Store.ExcludeRecipients) // validated
		svc.Records = &store.Recorder{Store: st, Exclude: ex, Log: log}
	}
	mode, _ := strconv.ParseUint(cfg.Milter.SocketMode, 8, 32)
	srv := milter.NewServer(svc, milter.Options{IdleTimeout: cfg.Milter.IdleTimeout.Duration,
		SocketMode: fs.FileMode(mode), Log: log})

	var listeners []net.Listener
	for _, spec := range cfg.Milter.Listen {
		sock, _ := config.ParseSocket(spec) // validated
		ln, err := milter.Listen(sock, fs.FileMode(mode), cfg.Milter.SocketGroup)
		if err != nil {
			log.Error("cannot start", "err", err)
			for _, l := range listeners {
				l.Close()
			}
			return 1
		}
		listeners = append(listeners, ln)
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	errc := make(chan error, len(listeners))
	var wg sync.WaitGroup
	for _, ln := range listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
				errc <- fmt.Errorf("serve %s: %w", ln.Addr(), err)
			}
		}()
	}
	addrs := make([]string, len(listeners))
	for i, ln := range listeners {
		addrs[i] = ln.Addr().Network() + ":" + ln.Addr().String()
	}
	log.Info("authmilter started", "version", versionString(), "listen", strings.Join(addrs, ","),
		"authserv_id", cfg.AuthservID, "config", configName(*cfgPath))

	code := 0
	select {
	case s := <-sigs:
		log.Info("shutting down", "signal", s.String(), "wait", cfg.Milter.ShutdownTimeout.String())
	case err := <-errc:
		log.Error("listener failed, shutting down", "err", err)
		code = 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Milter.ShutdownTimeout.Duration)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	wg.Wait()
	for _, spec := range cfg.Milter.Listen {
		if s, _ := config.ParseSocket(spec); s.Network == "unix" {
			os.Remove(s.Address)
		}
	}
	log.Info("stopped")
	return code
}

// openStore opens the record store the configuration names; nil for
// backend "off".
func openStore(cfg *config.Config, log *slog.Logger) (*store.Store, error) {
	c := cfg.Store
	if c.Backend == "off" {
		return nil, nil
	}
	dir := c.Dir
	if dir == "" {
		dir = store.DefaultDir()
	}
	o := store.Options{
		Backend: c.Backend, SQLitePath: filepath.Join(dir, "records.db"), PostgresDSN: c.PostgresDSN,
		SpoolDir: dir, Async: c.Commit == "async", WriteTimeout: c.WriteTimeout.Duration,
		Retention: time.Duration(c.RetentionDays) * 24 * time.Hour, Log: log,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, o)
	if err != nil {
		return nil, err
	}
	log.Info("record store", "backend", c.Backend, "dir", dir, "commit", c.Commit)
	return st, nil
}

func configName(p string) string {
	if p == "" {
		return "(embedded defaults)"
	}
	return p
}

// libraryLog takes go-milter's log lines.
type libraryLog struct{ log *slog.Logger }

func (l libraryLog) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	level := slog.LevelWarn
	for _, routine := range []string{"use of closed network connection", "connection reset", "EOF", "i/o timeout", "broken pipe"} {
		if strings.Contains(msg, routine) {
			level = slog.LevelDebug
		}
	}
	l.log.Log(context.Background(), level, "milter protocol", "detail", msg)
	return len(p), nil
}
