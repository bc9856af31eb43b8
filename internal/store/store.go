// Package store keeps the per-message records aggregate reports are built
// from, durably: SQLite by default, PostgreSQL for several MX hosts sharing
// one database, and a local spool file when the database cannot take a
// record in time, so that no record is lost and no mail waits on the store.
//
// Writes go through one writer goroutine that commits whatever the
// concurrent sessions have queued in one transaction (group commit). In the
// default sync mode Put returns only when its records are committed, to the
// database or to the fsynced spool; in async mode Put returns at once.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authmilter/authmilter/pkg/report"
)

// Errors callers may test for.
var (
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store: closed")
	// ErrSchemaTooNew: the database was migrated by a newer build.
	ErrSchemaTooNew = errors.New("schema is newer than this build")
	// ErrLost: a record could be kept neither in the database nor in the
	// spool (e.g. the disk is full). The store has counted it
	// (Stats.Lost) and logged one line for it.
	ErrLost = errors.New("store: record lost: database and spool both failed")
	// ErrBadDSN: the PostgreSQL connection string does not parse.
	ErrBadDSN = errors.New("not a valid PostgreSQL connection string (URL or key=value)")
)

// Backends.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

// Options configure a Store. Zero values take the defaults shown.
type Options struct {
	Backend     string // SQLite (default) or Postgres
	SQLitePath  string // the database file (SQLite)
	PostgresDSN string // URL or key=value string (Postgres)
	SpoolDir    string // where spool files go; required

	// Async: Put returns before the commit. A crash loses what is queued
	// in memory: at most QueueSize requests, normally the last few
	// milliseconds of mail.
	Async bool
	// WriteTimeout bounds how long Put waits for a commit before it writes
	// its records to the spool instead (default 2s), and how long one
	// database commit may take before the store counts as down (SQLite:
	// how long a commit waits for another process's write lock).
	WriteTimeout time.Duration
	// RetryInterval is how often a store that is down is probed, and
	// spool files are replayed once it is back (default 5s).
	RetryInterval time.Duration
	// MaxBatch caps the records of one transaction (default 1000).
	MaxBatch int
	// CommitDelay makes the writer wait this long after the first request
	// of a batch for more to join (default 0: it takes whatever is queued
	// while the previous commit ran, which batches well under load and adds
	// no latency when idle).
	CommitDelay time.Duration
	// QueueSize is how many Put calls may wait for the writer (default
	// 1024, async 16384).
	QueueSize int
	// Retention: reported rows older than this are pruned, checked every
	// PruneInterval (default 1h). 0 keeps them forever.
	Retention     time.Duration
	PruneInterval time.Duration

	Log *slog.Logger // nil: discard
}

// Row is one stored record with its id and, once sent, its report id.
type Row struct {
	ID       string
	ReportID string // "" until reported
	Record   report.Record
}

// Query selects rows.
type Query struct {
	Begin, End   time.Time // Record.Time in [Begin, End); zero means unbounded
	PolicyDomain string    // "" for every policy domain
	Unreported   bool      // only rows not marked reported yet
}

// Stats counts records since Open.
type Stats struct {
	Committed int64 // inserted by the writer into the database
	Commits   int64 // the writer's transactions that did (Committed/Commits is the batch size)
	Spooled   int64 // written to the spool (by the writer or a waiter that gave up)
	Replayed  int64 // read back from spool files and inserted (duplicates included)
	Lost      int64 // kept neither in the database nor in the spool (ErrLost)
}

// backend is one database.
type backend interface {
	migrate(ctx context.Context) error
	insert(ctx context.Context, es []entry) error
	inTx(ctx context.Context, fn func(txer) error) error
	exec(ctx context.Context, q string, args ...any) (int64, error)
	each(ctx context.Context, q string, args []any, fn func(id, data, reportID string) error) error
	// query runs q and calls fn for each row with a Scan for its columns.
	query(ctx context.Context, q string, args []any, fn func(scan func(dest ...any) error) error) error
	ping(ctx context.Context) error
	tryLock(ctx context.Context, name string) (func(), bool, error)
	close() error
}

// Store is the record store. Its methods are safe for concurrent use.
type Store struct {
	o   Options
	log *slog.Logger
	db  backend
	sp  *spool

	mu     sync.RWMutex // closed, and Put's send against Close
	closed bool
	in     chan *request
	kick   chan struct{} // wakes the replayer
	stop   chan struct{} // closed by Close
	wg     sync.WaitGroup

	down atomic.Bool // the writer treats the database as unavailable

	// losing is set when a record is lost and cleared when one is kept
	// again, or when the replayer finds the spool writable again.
	losing atomic.Bool

	committed, commits, spooled, replayed, lost atomic.Int64
	attempts                                    atomic.Int64 // the writer's inserts begun (tests watch it)
}

// request is one Put's records on their way to the writer. In sync mode
// Put waits on done, with timer bounding the wait; a request whose answer
// Put received goes back to requests for the next Put (the writer no
// longer holds it), one Put gave up on is left to the garbage collector.
type request struct {
	es    []entry
	done  chan error  // nil in async mode
	timer *time.Timer // sync mode: WriteTimeout from Put's start
}

var requests sync.Pool

// migrateTimeout bounds applying the schema migrations. Migrating takes
// several statements (more with each schema version) and happens at start
// or when the database comes back, not while a message waits: it must not
// share one commit's WriteTimeout, which tests and busy sites set short
// (TestSpoolWhileLocked/postgres failed under load with "relation
// \"records\" does not exist": the schema was never created; issue 19).
func (o Options) migrateTimeout() time.Duration { return max(o.WriteTimeout, 10*time.Second) }

// Open opens the backend, applies the schema migrations, replays spool
// files left by earlier runs and starts the writer. A PostgreSQL server that
// is down at start does not fail Open: records go to the spool until it is
// back. A SQLite file that cannot be opened does.
func Open(ctx context.Context, o Options) (*Store, error) {
	if o.SpoolDir == "" {
		return nil, errors.New("store: no spool directory")
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 2 * time.Second
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = 5 * time.Second
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 1000
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 1024
		if o.Async {
			o.QueueSize = 16384
		}
	}
	if o.PruneInterval <= 0 {
		o.PruneInterval = time.Hour
	}
	s := &Store{o: o, log: o.Log, sp: &spool{dir: o.SpoolDir},
		in: make(chan *request, o.QueueSize), kick: make(chan struct{}, 1), stop: make(chan struct{})}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(o.SpoolDir, 0o750); err != nil {
		return nil, fmt.Errorf("store: spool directory: %w", err)
	}
	switch o.Backend {
	case SQLite, "":
		if o.SQLitePath == "" {
			return nil, errors.New("store: no SQLite path")
		}
		db, err := openSQLite(o.SQLitePath, o.WriteTimeout)
		if err != nil {
			return nil, err
		}
		if err := db.migrate(ctx); err != nil {
			db.close()
			return nil, fmt.Errorf("store: sqlite %s: %w", o.SQLitePath, err)
		}
		s.db = db
	case Postgres:
		db, err := openPostgres(o.PostgresDSN)
		if err != nil {
			return nil, err
		}
		s.db = db
		mctx, cancel := context.WithTimeout(ctx, o.migrateTimeout())
		err = db.migrate(mctx)
		cancel()
		if errors.Is(err, ErrSchemaTooNew) {
			db.close()
			return nil, err
		}
		if err != nil {
			s.log.Warn("store: PostgreSQL unavailable at start; records go to the spool until it is back", "err", err)
			s.down.Store(true)
		}
	default:
		return nil, fmt.Errorf("store: unknown backend %q", o.Backend)
	}
	s.wg.Add(3)
	go s.writer()
	go s.replayer()
	go s.pruner()
	if !s.down.Load() {
		s.wake() // spool files of earlier runs
	}
	return s, nil
}

// Put stores records. In sync mode it returns once they are committed to
// the database, or, when that takes longer than WriteTimeout, to the spool.
// An error means neither worked (e.g. the spool's disk is full): the records
// are lost and the caller should log it; it must not hold up the mail.
func (s *Store) Put(ctx context.Context, recs ...report.Record) error {
	if len(recs) == 0 {
		return nil
	}
	var req *request
	if s.o.Async {
		req = &request{es: make([]entry, 0, len(recs))} // the writer keeps it
	} else if r, ok := requests.Get().(*request); ok {
		req = r
	} else {
		req = &request{done: make(chan error, 1)}
	}
	now := time.Now().UTC()
	for _, r := range recs {
		if r.Time.IsZero() {
			r.Time = now
		}
		e, err := newEntry(r)
		if err != nil {
			return err
		}
		req.es = append(req.es, e)
	}
	es := req.es
	// One timer for both waits, made or reset only in sync mode or when the
	// queue is full.
	var timeout <-chan time.Time
	startTimer := func() {
		if req.timer == nil {
			req.timer = time.NewTimer(s.o.WriteTimeout)
		} else {
			req.timer.Reset(s.o.WriteTimeout)
		}
		timeout = req.timer.C
	}
	if !s.o.Async {
		startTimer()
	}

	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	select {
	case s.in <- req:
	default:
		if timeout == nil {
			startTimer()
		}
		select {
		case s.in <- req:
		case <-timeout:
			s.mu.RUnlock()
			return s.spoolSelf(es, "queue full")
		case <-ctx.Done():
			s.mu.RUnlock()
			return s.spoolSelf(es, "context done")
		}
	}
	s.mu.RUnlock()
	if req.done == nil {
		if req.timer != nil {
			req.timer.Stop()
		}
		return nil
	}
	select {
	case err := <-req.done:
		req.timer.Stop()
		clear(req.es) // let the records go
		req.es = req.es[:0]
		requests.Put(req)
		return err
	case <-timeout:
		// The writer still has them and may commit them later: the ids make
		// that second copy harmless (ON CONFLICT DO NOTHING at replay).
		return s.spoolSelf(es, "commit slower than write_timeout")
	case <-ctx.Done():
		req.timer.Stop()
		return s.spoolSelf(es, "context done")
	}
}

func (s *Store) spoolSelf(es []entry, why string) error {
	if err := s.sp.append(es); err != nil {
		return s.lose(es, err)
	}
	s.spooled.Add(int64(len(es)))
	s.losing.Store(false)
	s.log.Debug("store: records spooled", "n", len(es), "why", why)
	return nil
}

// lose counts and logs, one line each, records that could be kept neither
// in the database nor in the spool, and returns the error for their
// waiters. Mail is not held up: the message is acknowledged without its
// record, and /readyz reports the store unhealthy (Losing) until a record
// is kept again.
func (s *Store) lose(es []entry, err error) error {
	s.lost.Add(int64(len(es)))
	s.losing.Store(true)
	for _, e := range es {
		s.log.Error("store: record lost: database and spool both failed", "queue_id", e.rec.QueueID,
			"policy_domain", e.rec.Policy.Domain, "header_from", e.rec.HeaderFrom, "err", err)
	}
	return fmt.Errorf("%w: %w", ErrLost, err)
}

// Losing reports whether records are being lost now: the last record
// could be kept neither in the database nor in the spool, and the spool
// has not been found writable since.
func (s *Store) Losing() bool { return s.losing.Load() }

// writer is the one goroutine that commits: it takes the first queued
// request, every other request already queued (up to MaxBatch records),
// commits them in one transaction and answers each waiter.
func (s *Store) writer() {
	defer s.wg.Done()
	for {
		first, ok := <-s.in
		if !ok {
			return
		}
		batch, n := []*request{first}, len(first.es)
		open := true
		if s.o.CommitDelay > 0 {
			t := time.NewTimer(s.o.CommitDelay)
		wait:
			for n < s.o.MaxBatch {
				select {
				case r, ok := <-s.in:
					if !ok {
						open = false
						break wait
					}
					batch, n = append(batch, r), n+len(r.es)
				case <-t.C:
					break wait
				}
			}
			t.Stop()
		}
	drain:
		for open && n < s.o.MaxBatch {
			select {
			case r, ok := <-s.in:
				if !ok {
					open = false
					break drain
				}
				batch, n = append(batch, r), n+len(r.es)
			default:
				break drain
			}
		}
		s.commit(batch, n)
		if !open {
			return
		}
	}
}

func (s *Store) commit(batch []*request, n int) {
	es := batch[0].es
	if len(batch) > 1 {
		es = make([]entry, 0, n)
		for _, r := range batch {
			es = append(es, r.es...)
		}
	}
	var err error
	if !s.down.Load() {
		ctx, cancel := context.WithTimeout(context.Background(), s.o.WriteTimeout)
		s.attempts.Add(1)
		err = s.db.insert(ctx, es)
		cancel()
		if err == nil {
			s.committed.Add(int64(len(es)))
			s.commits.Add(1)
			s.losing.Store(false)
			answer(batch, nil)
			return
		}
		s.log.Warn("store: database unavailable; records go to the spool until it is back", "err", err)
		s.down.Store(true)
	}
	err = s.sp.append(es)
	if err == nil {
		s.spooled.Add(int64(len(es)))
		s.losing.Store(false)
	} else {
		err = s.lose(es, err)
	}
	answer(batch, err)
}

func answer(batch []*request, err error) {
	for _, r := range batch {
		if r.done != nil {
			r.done <- err
		}
	}
}

// probe checks whether a database that is down is back. It runs on the
// replayer, never on the writer, which meanwhile spools without waiting.
func (s *Store) probe() bool {
	ctx, cancel := context.WithTimeout(context.Background(), s.o.WriteTimeout)
	defer cancel()
	err := s.db.ping(ctx)
	if err == nil {
		mctx, mcancel := context.WithTimeout(context.Background(), s.o.migrateTimeout())
		err = s.db.migrate(mctx) // a database that was down at start
		mcancel()
	}
	if err != nil {
		s.log.Debug("store: database still unavailable", "err", err)
		return false
	}
	s.log.Info("store: database is back; replaying the spool")
	s.down.Store(false)
	return true
}

func (s *Store) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// replayer inserts spool files into the database, then deletes them. The
// same record may be in the database already (its waiter gave up while the
// writer still committed it, or a replay was cut short): the insert ignores
// ids it has, so every record ends up exactly once.
//
// Every RetryInterval it also probes a database that is down, and looks for
// spool files to replay (left by waiters that gave up, or by processes that
// are gone).
func (s *Store) replayer() {
	defer s.wg.Done()
	tick := time.NewTicker(s.o.RetryInterval)
	defer tick.Stop()
	for {
		select {
		case <-s.kick:
		case <-tick.C:
		case <-s.stop:
			return
		}
		if s.losing.Load() {
			// Records were lost (disk full?): find out without waiting
			// for the next message whether the spool takes them again,
			// so /readyz recovers by itself.
			if err := s.sp.probe(); err == nil {
				s.log.Info("store: the spool is writable again; records are kept")
				s.losing.Store(false)
			}
		}
		if s.down.Load() && !s.probe() {
			continue
		}
		files := s.sp.take()
		for i, sf := range files {
			if err := s.replayFile(sf); err != nil {
				s.log.Warn("store: spool replay failed; will retry", "file", sf.path, "err", err)
				s.sp.giveBack(files[i:])
				break
			}
		}
	}
}

func (s *Store) replayFile(sf *spoolFile) error {
	if _, err := sf.f.Seek(0, 0); err != nil {
		return err
	}
	es, bad, torn, err := readSpool(sf.f)
	if err != nil {
		return err
	}
	if bad > 0 {
		s.log.Warn("store: spool lines that do not parse were skipped", "file", sf.path, "n", bad)
	}
	if torn {
		s.log.Info("store: torn last line in spool file dropped (crash while writing; never acknowledged)", "file", sf.path)
	}
	for len(es) > 0 {
		n := min(len(es), s.o.MaxBatch)
		ctx, cancel := context.WithTimeout(context.Background(), s.o.WriteTimeout+time.Duration(n)*time.Millisecond)
		err := s.db.insert(ctx, es[:n])
		cancel()
		if err != nil {
			return err
		}
		s.replayed.Add(int64(n))
		es = es[n:]
	}
	s.log.Info("store: spool file replayed", "file", filepath.Base(sf.path))
	return sf.remove()
}

// pruner deletes reported rows older than the retention.
func (s *Store) pruner() {
	defer s.wg.Done()
	if s.o.Retention <= 0 {
		return
	}
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-s.stop:
			return
		}
		if !s.down.Load() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			n, err := s.Prune(ctx, time.Now().Add(-s.o.Retention))
			cancel()
			if err != nil {
				s.log.Warn("store: prune", "err", err)
			} else if n > 0 {
				s.log.Info("store: pruned reported records", "n", n, "retention", s.o.Retention.String())
			}
		}
		t.Reset(s.o.PruneInterval)
	}
}

// Close commits what is queued, stops the background work and closes the
// database. Spool files not replayed yet stay for the next start.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	close(s.in)
	s.mu.Unlock()
	close(s.stop)
	s.wg.Wait()
	s.sp.closeAll()
	return s.db.close()
}

// Stats returns the counters.
func (s *Store) Stats() Stats {
	return Stats{Committed: s.committed.Load(), Commits: s.commits.Load(), Spooled: s.spooled.Load(), Replayed: s.replayed.Load(),
		Lost: s.lost.Load()}
}

// Down reports whether the writer currently treats the database as
// unavailable (records go to the spool).
func (s *Store) Down() bool { return s.down.Load() }

// Each calls fn for every row q selects, in time order, without holding
// them all in memory.
func (s *Store) Each(ctx context.Context, q Query, fn func(Row) error) error {
	sq, args := selectQuery(q)
	err := s.db.each(ctx, sq, args, func(id, data, rid string) error {
		row := Row{ID: id, ReportID: rid}
		if err := json.Unmarshal([]byte(data), &row.Record); err != nil {
			return fmt.Errorf("store: row %s: %w", id, err)
		}
		return fn(row)
	})
	if err != nil {
		return fmt.Errorf("store: query: %w", err)
	}
	return nil
}

// Rows returns every row q selects, in time order.
func (s *Store) Rows(ctx context.Context, q Query) ([]Row, error) {
	var out []Row
	err := s.Each(ctx, q, func(r Row) error {
		out = append(out, r)
		return nil
	})
	return out, err
}

// Pending returns the rows not reported yet whose time is before before.
//
// Records spooled during an outage reach the database late, with their
// original time: a report run may find rows older than its previous
// cut-off. They are still unreported, so the next report includes them.
func (s *Store) Pending(ctx context.Context, before time.Time) ([]Row, error) {
	return s.Rows(ctx, Query{End: before, Unreported: true})
}

// PendingDomains lists the policy domains with rows not reported yet whose
// time is before before: the reports to build.
func (s *Store) PendingDomains(ctx context.Context, before time.Time) ([]string, error) {
	var out []string
	err := s.db.each(ctx, `SELECT policy_domain, '', '' FROM (`+domainsQuery+`) d`, []any{before.UnixMicro()},
		func(d, _, _ string) error {
			out = append(out, d)
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("store: pending domains: %w", err)
	}
	return out, nil
}

// MarkReported records that the rows ids went out in report reportID. Rows
// marked before are marked again (a re-send reuses the report id).
func (s *Store) MarkReported(ctx context.Context, ids []string, reportID string) error {
	if reportID == "" {
		return errors.New("store: empty report id")
	}
	now := time.Now().UnixMicro()
	err := s.db.inTx(ctx, func(t txer) error {
		for rest := ids; len(rest) > 0; {
			n := min(len(rest), insertBatch)
			args := make([]any, 0, n+2)
			args = append(args, reportID, now)
			for _, id := range rest[:n] {
				args = append(args, id)
			}
			if _, err := t.exec(ctx, markHead+placeholders(n)+")", args...); err != nil {
				return err
			}
			rest = rest[n:]
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: mark reported: %w", err)
	}
	return nil
}

// Prune deletes reported rows whose time is before olderThan and returns
// how many. Rows never reported are kept.
func (s *Store) Prune(ctx context.Context, olderThan time.Time) (int64, error) {
	var total int64
	for {
		n, err := s.db.exec(ctx, pruneQuery, olderThan.UnixMicro())
		if err != nil {
			return total, fmt.Errorf("store: prune: %w", err)
		}
		total += n
		if n == 0 {
			return total, nil
		}
	}
}

// TryLock takes the named lock without waiting, so that of several MX
// hosts sharing a database exactly one does a job (e.g. sends the reports):
// a PostgreSQL advisory lock (pg_try_advisory_lock) on a connection held
// until release, or for SQLite a flock on a file beside the database. ok is
// false when another holder has it. release must be called once.
func (s *Store) TryLock(ctx context.Context, name string) (release func(), ok bool, err error) {
	return s.db.tryLock(ctx, name)
}
