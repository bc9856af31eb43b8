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
	"reflect"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/authmilter/authmilter/internal/config"
	"github.com/authmilter/authmilter/internal/failrep"
	"github.com/authmilter/authmilter/internal/metrics"
	"github.com/authmilter/authmilter/internal/milter"
	"github.com/authmilter/authmilter/internal/resolver"
	"github.com/authmilter/authmilter/internal/service"
	"github.com/authmilter/authmilter/internal/store"
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
	level := new(slog.LevelVar)
	_ = level.UnmarshalText([]byte(cfg.Log.Level)) // validated before
	return newLevelLogger(cfg.Log.Format, level, w)
}

// newLevelLogger writes text or JSON lines at the level level holds, which
// a reload may change.
func newLevelLogger(format string, level slog.Leveler, w io.Writer) *slog.Logger {
	o := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}

// newResolver builds the one resolver from the [dns] section; log (may be
// nil) gets a debug line per query.
func newResolver(cfg *config.Config, log *slog.Logger) (*resolver.Resolver, error) {
	return newObservedResolver(cfg, log, nil)
}

// newObservedResolver is newResolver with a metrics hook (may be nil).
func newObservedResolver(cfg *config.Config, log *slog.Logger, observe func(resolver.Event)) (*resolver.Resolver, error) {
	rc := service.ResolverConfig(cfg)
	rc.Logger, rc.Observe = log, observe
	res, err := resolver.New(rc)
	if err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	return res, nil
}

// newService builds everything a message needs from the configuration, on
// the resolver res, the store st (nil: no records) and the metrics m (nil:
// none).
func newService(cfg *config.Config, log *slog.Logger, res *resolver.Resolver, st *store.Store, m *metrics.Metrics) (*service.Service, error) {
	deps := service.Deps{Resolver: res, Log: log}
	if st != nil {
		ex, err := store.ParseExclusions(cfg.Store.ExcludeRecipients)
		if err != nil {
			return nil, fmt.Errorf("store.exclude_recipients: %w", err)
		}
		deps.Records = &store.Recorder{Store: st, Exclude: ex, Log: log}
	}
	if m != nil {
		deps.Observe = m
	}
	// The key files are read here, at start and on every reload: SIGHUP
	// picks up rotated keys.
	svc, err := service.New(cfg, deps)
	if err != nil {
		return nil, err
	}
	if st != nil {
		var observe func(string)
		if m != nil {
			observe = m.Incoming
		}
		ir := cfg.IncomingReports
		svc.Incoming = service.NewIncoming(newIngester(cfg, st, log, observe), ir.Recipients, ir.Discard, ir.MaxMailBytes)
	}
	return svc, nil
}

// daemon is what serve keeps between reloads.
type daemon struct {
	path     string // the configuration file; "" for the embedded defaults
	log      *slog.Logger
	level    *slog.LevelVar
	metrics  *metrics.Metrics
	store    *store.Store      // nil: backend "off"
	failures *failrep.Reporter // nil: failure reports off
	current  *service.Current

	// The running configuration and its resolver; only the main loop
	// (start, reload, shutdown) touches them.
	cfg *config.Config
	res *resolver.Resolver
}

// build makes the service for cfg. The resolver, and so its cache, is
// kept when the [dns] section did not change.
func (d *daemon) build(cfg *config.Config) (*service.Service, *resolver.Resolver, error) {
	res := d.res
	if res == nil || !reflect.DeepEqual(cfg.DNS, d.cfg.DNS) {
		var err error
		if res, err = newObservedResolver(cfg, d.log, d.metrics.DNS); err != nil {
			return nil, nil, err
		}
	}
	svc, err := newService(cfg, d.log, res, d.store, d.metrics)
	if err != nil {
		return nil, nil, err
	}
	svc.Failures = d.failures // nil at start: set once it runs
	return svc, res, nil
}

// restartOnly lists the settings a reload cannot change: sockets and
// listeners are open, the store and the report scheduler are running. A
// key stands for itself and everything below it. A reload that changes
// them logs a warning naming them, and they keep their running values
// until the next restart.
var restartOnly = []string{
	"milter.listen", "milter.socket_mode", "milter.socket_group", "milter.idle_timeout", "milter.max_sessions",
	"signing.listen",
	"log.format",
	"store.backend", "store.dir", "store.postgres_dsn", "store.commit", "store.write_timeout", "store.retention_days",
	"report",
	"failure_reports",
	"metrics",
	"dashboard",
}

func needsRestart(key string) bool {
	for _, p := range restartOnly {
		if key == p || strings.HasPrefix(key, p+".") {
			return true
		}
	}
	return false
}

// reload re-reads the configuration file (SIGHUP). A file with errors, or
// one the service cannot be built from, is refused: its errors are logged
// and the running configuration stays. Otherwise messages that begin from
// now on use the new configuration; messages in flight finish with the
// one they started with, and no connection is dropped.
func (d *daemon) reload() error {
	d.log.Info("reloading the configuration", "config", configName(d.path))
	cfg, err := loadConfig(d.path)
	if err == nil {
		changed := changedKeys(d.cfg, cfg)
		var restart, applied []string
		for _, k := range changed {
			if needsRestart(k) {
				restart = append(restart, k)
				copyKey(cfg, d.cfg, k) // the running value stays
			} else {
				applied = append(applied, k)
			}
		}
		var svc *service.Service
		var res *resolver.Resolver
		if svc, res, err = d.build(cfg); err == nil {
			d.current.Set(svc)
			d.cfg, d.res = cfg, res
			_ = d.level.UnmarshalText([]byte(cfg.Log.Level)) // validated
			d.metrics.Reload(true)
			if len(restart) > 0 {
				// Names only: values may be secrets (store.postgres_dsn, report.smtp.password).
				d.log.Warn("changed settings need a restart to take effect; they keep their running values",
					"settings", strings.Join(restart, ","))
			}
			d.log.Info("configuration reloaded", "config", configName(d.path), "changed", strings.Join(applied, ","),
				"log_level", cfg.Log.Level)
			return nil
		}
	}
	d.metrics.Reload(false)
	d.log.Error("reload refused; the running configuration is kept", "config", configName(d.path),
		"errors", reloadErrors(err))
	return err
}

// reloadErrors is the one-line form of a refused file's problems:
// "line 3: dns.timeout: …; line 7: …", without the "config PATH:" heading
// that check-config prints above them (the path is logged beside it).
func reloadErrors(err error) string {
	var es config.Errors
	if errors.As(err, &es) {
		return strings.ReplaceAll(es.Error(), "\n", "; ")
	}
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

// changedKeys returns the dotted names of the options whose values differ
// between a and b, from the toml tags (a section's own name when a whole
// list or value differs).
func changedKeys(a, b *config.Config) []string {
	var out []string
	var walk func(x, y reflect.Value, prefix string)
	walk = func(x, y reflect.Value, prefix string) {
		t := x.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name := strings.Split(f.Tag.Get("toml"), ",")[0]
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			if prefix != "" {
				name = prefix + "." + name
			}
			fx, fy := x.Field(i), y.Field(i)
			if isSection(f.Type) {
				walk(fx, fy, name)
				continue
			}
			if !reflect.DeepEqual(fx.Interface(), fy.Interface()) {
				out = append(out, name)
			}
		}
	}
	walk(reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem(), "")
	return out
}

// isSection reports whether t is a table of options (a struct with toml
// tags), rather than one value such as config.Duration.
func isSection(t reflect.Type) bool {
	if t.Kind() != reflect.Struct {
		return false
	}
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).Tag.Get("toml") != "" {
			return true
		}
	}
	return false
}

// copyKey sets the option key (dotted toml name) of dst to its value in
// src.
func copyKey(dst, src *config.Config, key string) {
	x, y := reflect.ValueOf(dst).Elem(), reflect.ValueOf(src).Elem()
	for _, part := range strings.Split(key, ".") {
		found := false
		for i := 0; i < x.NumField(); i++ {
			if strings.Split(x.Type().Field(i).Tag.Get("toml"), ",")[0] == part {
				x, y, found = x.Field(i), y.Field(i), true
				break
			}
		}
		if !found {
			return
		}
	}
	x.Set(y)
}

func cmdServe(args []string, stderr io.Writer) int {
	fl := flag.NewFlagSet("serve", flag.ContinueOnError)
	fl.SetOutput(stderr)
	cfgPath := fl.String("config", "", "configuration file (default: embedded defaults)")
	if err := fl.Parse(args); err != nil {
		return 2
	}
	// SIGHUP first: its default action would end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "authmilter:", err)
		return 1
	}
	log, level := serveLogger(cfg, stderr)
	tuneGC()
	d := &daemon{path: *cfgPath, log: log, level: level, metrics: metrics.New(versionString())}
	st, err := openStore(cfg, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	if st != nil {
		defer st.Close() // after the sessions drained: their records are queued
		d.store = st
		d.metrics.Store(st.Stats, st.Down)
	}
	svc, res, err := d.build(cfg)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	if st != nil {
		// The daemon's resolver: one cache, one set of DNS metrics.
		stopReports, err := startReporter(cfg, st, res, log, d.metrics.Mailer)
		if err != nil {
			log.Error("cannot start", "err", err)
			return 1
		}
		// Deferred after st.Close, so the scheduler stops before the store closes.
		defer stopReports()
	}
	failures, stopFailures, err := startFailureReports(cfg, st, res, log, d.metrics)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	// Deferred after st.Close: the sender stops before the store closes.
	defer stopFailures()
	d.failures, svc.Failures = failures, failures
	d.cfg, d.res, d.current = cfg, res, service.NewCurrent(svc)
	mode, _ := strconv.ParseUint(cfg.Milter.SocketMode, 8, 32)
	srv := milter.NewServer(d.current, milter.Options{IdleTimeout: cfg.Milter.IdleTimeout.Duration,
		SocketMode: fs.FileMode(mode), MaxSessions: cfg.Milter.MaxSessions, Log: log})
	d.metrics.Sessions(srv.Sessions, srv.Refused)
	// The signing.listen sockets: every message signed (service.SignOnly).
	signSrv := milter.NewServer(service.SignOnly{Current: d.current}, milter.Options{IdleTimeout: cfg.Milter.IdleTimeout.Duration,
		SocketMode: fs.FileMode(mode), MaxSessions: cfg.Milter.MaxSessions, Log: log})

	listeners, servers, err := openListeners(cfg, log, srv, signSrv)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}

	var listening atomic.Bool
	defer startSideListeners(cfg, d, st, &listening)()

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	errc, wg := serveAll(listeners, servers)
	listening.Store(true)
	addrs, signAddrs := listenAddrs(listeners, servers, signSrv)
	log.Info("authmilter started", "version", versionString(), "listen", strings.Join(addrs, ","),
		"signing", cfg.Signing.Enabled, "signing_listen", strings.Join(signAddrs, ","),
		"authserv_id", cfg.AuthservID, "config", configName(*cfgPath), "log_level", cfg.Log.Level)

	code := 0
loop:
	for {
		select {
		case <-hup:
			d.reload()
		case s := <-sigs:
			log.Info("shutting down", "signal", s.String(), "wait", d.cfg.Milter.ShutdownTimeout.String())
			break loop
		case err := <-errc:
			log.Error("listener failed, shutting down", "err", err)
			code = 1
			break loop
		}
	}
	listening.Store(false)
	shutdown(d.cfg.Milter.ShutdownTimeout.Duration, log, []*milter.Server{srv, signSrv}, wg)
	removeSockets(cfg)
	log.Info("stopped")
	return code
}

// serveLogger is the daemon's logger at the level a reload may change; the
// standard logger, which libraries write to, goes through it too.
func serveLogger(cfg *config.Config, stderr io.Writer) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	_ = level.UnmarshalText([]byte(cfg.Log.Level)) // validated
	log := newLevelLogger(cfg.Log.Format, level, stderr)
	// go-milter logs through the standard logger: connection ends the MTA
	// caused are routine, anything else is worth a warning.
	stdlog.SetFlags(0)
	stdlog.SetOutput(libraryLog{log})
	return log, level
}

// openListeners opens the milter sockets (milter.listen) and the signing
// sockets (signing.listen) and says which server serves each. On an error
// the sockets already open are closed.
func openListeners(cfg *config.Config, log *slog.Logger, srv, signSrv *milter.Server) ([]net.Listener, map[net.Listener]*milter.Server, error) {
	mode, _ := strconv.ParseUint(cfg.Milter.SocketMode, 8, 32)
	var listeners []net.Listener
	servers := map[net.Listener]*milter.Server{}
	for i, spec := range append(append([]string(nil), cfg.Milter.Listen...), cfg.Signing.Listen...) {
		sock, _ := config.ParseSocket(spec) // validated
		ln, err := milter.Listen(sock, fs.FileMode(mode), cfg.Milter.SocketGroup)
		if err != nil {
			for _, l := range listeners {
				l.Close()
			}
			return nil, nil, err
		}
		listeners = append(listeners, ln)
		if sock.Network == "unix" {
			if w := milter.SocketDirWarning(sock.Address); w != "" {
				log.Warn("milter socket: " + w)
			}
		}
		servers[ln] = srv
		if i >= len(cfg.Milter.Listen) {
			servers[ln] = signSrv
		}
	}
	// What the MTA will find at each socket, once all are open (a TCP
	// socket accepts as soon as it is bound).
	for i, spec := range append(append([]string(nil), cfg.Milter.Listen...), cfg.Signing.Listen...) {
		logSocket(log, spec, listeners[i], cfg.Milter.SocketGroup, systemSocketEnv)
	}
	return listeners, servers, nil
}

// startSideListeners starts the metrics and dashboard listeners, which are
// not the mail path: if a port is taken the milter still starts, with an
// error in the log. listening tells /readyz whether the milter serves. The
// returned function stops them.
func startSideListeners(cfg *config.Config, d *daemon, st *store.Store, listening *atomic.Bool) (stop func()) {
	var stops []func()
	log := d.log
	if cfg.Metrics.Listen != "" {
		ms, err := metrics.Listen(cfg.Metrics.Listen, d.metrics.Handler(readiness(listening, st, storeDir(cfg))), log)
		if err != nil {
			log.Error("metrics listener not started: no /metrics, /healthz, /readyz", "err", err)
		} else {
			stops = append(stops, func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				ms.Shutdown(ctx)
			})
			log.Info("metrics listener", "listen", ms.Addr().String())
		}
	}
	if cfg.Dashboard.Listen != "" && st != nil {
		if stop := startDashboard(cfg, st, d.res, log); stop != nil {
			stops = append(stops, stop)
		}
	}
	return func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
}

// serveAll serves each listener with its server, one goroutine each; a
// listener that fails sends its error on the returned channel. The group
// is done when every Serve has returned.
func serveAll(listeners []net.Listener, servers map[net.Listener]*milter.Server) (<-chan error, *sync.WaitGroup) {
	errc := make(chan error, len(listeners))
	wg := &sync.WaitGroup{}
	for _, ln := range listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := servers[ln].Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
				errc <- fmt.Errorf("serve %s: %w", ln.Addr(), err)
			}
		}()
	}
	return errc, wg
}

// listenAddrs returns, for the start line, the addresses of the milter
// sockets and of the signing sockets.
func listenAddrs(listeners []net.Listener, servers map[net.Listener]*milter.Server, signSrv *milter.Server) (addrs, signAddrs []string) {
	for _, ln := range listeners {
		a := ln.Addr().Network() + ":" + ln.Addr().String()
		if servers[ln] == signSrv {
			signAddrs = append(signAddrs, a)
		} else {
			addrs = append(addrs, a)
		}
	}
	return addrs, signAddrs
}

// shutdown lets the messages in flight finish within timeout, on every
// server at once (they share the deadline), then waits for the Serve
// goroutines (serving).
func shutdown(timeout time.Duration, log *slog.Logger, servers []*milter.Server, serving *sync.WaitGroup) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var swg sync.WaitGroup
	for _, s := range servers {
		swg.Add(1)
		go func() {
			defer swg.Done()
			if err := s.Shutdown(ctx); err != nil {
				log.Warn("shutdown", "err", err)
			}
		}()
	}
	swg.Wait()
	serving.Wait()
}

// removeSockets removes the unix sockets serve created.
func removeSockets(cfg *config.Config) {
	for _, spec := range append(append([]string(nil), cfg.Milter.Listen...), cfg.Signing.Listen...) {
		if s, _ := config.ParseSocket(spec); s.Network == "unix" {
			os.Remove(s.Address)
		}
	}
}

// writable checks that a file can be created in dir, as the store's
// spool files are. The probe's name does not match the spool's pattern.
func writable(dir string) error {
	f, err := os.CreateTemp(dir, ".readyz-*")
	if err != nil {
		return err
	}
	name := f.Name()
	err = f.Close()
	if rerr := os.Remove(name); err == nil {
		err = rerr
	}
	return err
}

// readiness is what /readyz checks: the milter sockets are served, and the
// record store takes records, into the database or, while that is down,
// into the spool.
func readiness(listening *atomic.Bool, st *store.Store, spoolDir string) []metrics.Check {
	return []metrics.Check{
		{Name: "milter", Fn: func() (string, error) {
			if !listening.Load() {
				return "", errors.New("not serving (starting or shutting down)")
			}
			return "ok", nil
		}},
		{Name: "store", Fn: func() (string, error) {
			switch {
			case st == nil:
				return "off", nil
			case st.Losing():
				// Mail still flows, acknowledged without its record.
				return "", errors.New("records are being lost: neither the database nor the spool takes them (disk full?)")
			case !st.Down():
				return "ok", nil
			}
			if err := writable(spoolDir); err != nil {
				return "", fmt.Errorf("database down and the spool is not writable: %w", err)
			}
			return "spooling (database down)", nil
		}},
	}
}

// openStore opens the record store the configuration names; nil for
// backend "off".
func openStore(cfg *config.Config, log *slog.Logger) (*store.Store, error) {
	c := cfg.Store
	if c.Backend == "off" {
		return nil, nil
	}
	dir := storeDir(cfg)
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

// storeDir is the directory of the SQLite file and the spool files.
func storeDir(cfg *config.Config) string {
	if cfg.Store.Dir != "" {
		return cfg.Store.Dir
	}
	return store.DefaultDir()
}

func configName(p string) string {
	if p == "" {
		return "(embedded defaults)"
	}
	return p
}

// Garbage collector settings of serve, unless the operator sets GOGC or
// GOMEMLIMIT. The live heap is small (sessions, caches), and most garbage
// is per message: a higher GOGC trades a little memory for much less GC
// work (BENCHMARKS.md, "GC settings"); the soft memory limit makes the
// collector work harder again before the heap grows large.
const (
	serveGCPercent   = 400
	serveMemoryLimit = 256 << 20
)

func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(serveGCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(serveMemoryLimit)
	}
}

// libraryLog takes the log lines of libraries that use the standard logger.
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
