package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver, pure Go
)

// sqliteDB is the embedded backend: one database file in WAL mode.
//
// Durability: synchronous=FULL. In WAL mode NORMAL already survives a crash
// of the daemon (kill -9), because a commit is in the OS page cache once
// write() returns; but on power loss or a kernel crash the last commits can
// roll back, and we have told the MTA those messages are done. FULL fsyncs
// the WAL at every commit, and group commit makes that one fsync per batch,
// not per message, so the guarantee costs little throughput.
//
// Inserts go through one connection of their own, kept open with its
// statements prepared (see sqliteWriter): a commit then parses no SQL, and
// its statements run without a cancellable context, for which the driver
// would start a watcher goroutine per statement. The time a commit may wait
// for another process's write lock is that connection's busy_timeout, set
// to the store's write timeout.
type sqliteDB struct {
	path string
	db   *sql.DB
	busy time.Duration // the writer connection's busy_timeout

	wmu sync.Mutex    // the writer (group commits) and the replayer both insert
	w   *sqliteWriter // nil until the first insert, and after a broken one
}

func openSQLite(path string, busy time.Duration) (*sqliteDB, error) {
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("store: sqlite path %q must not contain '?' or '#'", path)
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
	}
	// Records name senders and recipients' domains: not for every local
	// user. SQLite gives its -wal and -shm files the database file's mode.
	if f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640); err == nil {
		f.Close()
	} else {
		return nil, fmt.Errorf("store: %w", err)
	}
	dsn := "file:" + path +
		"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)" +
		// No mmap_size: a memory-mapped read that hits an I/O error (or a
		// file another process shrank) is SIGBUS, which ends the whole
		// daemon; read() returns an error the store survives. Measured on
		// the dashboard's 1 M-row benchmark it gained nothing on a quiet
		// machine (sources page 0.42 s without, 0.36 s with).
		"&_txlock=immediate" // writers take the lock at BEGIN: no upgrade deadlocks between processes
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: sqlite %s: %w", path, err)
	}
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(4)
	return &sqliteDB{path: path, db: db, busy: busy}, nil
}

type sqlTx struct{ tx *sql.Tx }

func (t sqlTx) exec(ctx context.Context, q string, args ...any) (int64, error) {
	r, err := t.tx.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return r.RowsAffected()
}

func (t sqlTx) queryInt(ctx context.Context, q string, args ...any) (int64, error) {
	var n int64
	err := t.tx.QueryRowContext(ctx, q, args...).Scan(&n)
	return n, err
}

func (s *sqliteDB) inTx(ctx context.Context, fn func(txer) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(sqlTx{tx}); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func (s *sqliteDB) migrate(ctx context.Context) error {
	return s.inTx(ctx, func(t txer) error { return migrate(ctx, t) })
}

// insert commits es in one transaction on the writer connection.
func (s *sqliteDB) insert(ctx context.Context, es []entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.w == nil {
		w, err := newSQLiteWriter(ctx, s.db, s.busy)
		if err != nil {
			return err
		}
		s.w = w
	}
	err := s.w.insert(es)
	if s.w.broken {
		s.w.discard()
		s.w = nil
	}
	return err
}

// sqliteWriter is a connection that only inserts records, with its
// statements prepared once: BEGIN IMMEDIATE, COMMIT, ROLLBACK and INSERTs
// of 1, 2, 4 ... insertBatch rows (a batch of n rows runs the largest that
// fit, then the rest).
type sqliteWriter struct {
	conn                    *sql.Conn
	begin, commit, rollback *sql.Stmt
	ins                     [insertSizes]*sql.Stmt // ins[k] inserts 1<<k rows
	args                    []any                  // reused for the arguments
	broken                  bool                   // state unknown: discard, open a new one
}

func newSQLiteWriter(ctx context.Context, db *sql.DB, busy time.Duration) (*sqliteWriter, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	w := &sqliteWriter{conn: conn}
	// BEGIN IMMEDIATE waits for another process's write lock at most this
	// long; then the commit fails and the store spools until it is back.
	ms := max(busy.Milliseconds(), 1)
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout = %d", ms)); err != nil {
		w.discard()
		return nil, err
	}
	for _, p := range []struct {
		st **sql.Stmt
		q  string
	}{{&w.begin, "BEGIN IMMEDIATE"}, {&w.commit, "COMMIT"}, {&w.rollback, "ROLLBACK"}} {
		if *p.st, err = conn.PrepareContext(ctx, p.q); err != nil {
			w.discard()
			return nil, err
		}
	}
	return w, nil
}

func (w *sqliteWriter) insert(es []entry) error {
	// No deadline or cancellation below: see sqliteDB.
	ctx := context.Background()
	if _, err := w.begin.ExecContext(ctx); err != nil {
		// SQLite ends a BEGIN that failed without a transaction, but a
		// connection the driver gave up on cannot be told from that.
		if !isBusy(err) {
			w.broken = true
		}
		return err
	}
	err := w.insertRows(ctx, es)
	if err == nil {
		if _, err = w.commit.ExecContext(ctx); err == nil {
			return nil
		}
	}
	if _, rerr := w.rollback.ExecContext(ctx); rerr != nil {
		w.broken = true
	}
	return err
}

func (w *sqliteWriter) insertRows(ctx context.Context, es []entry) error {
	for len(es) > 0 {
		k := insertSize(len(es))
		n := 1 << k
		if w.ins[k] == nil {
			st, err := w.conn.PrepareContext(ctx, insertQuery(n))
			if err != nil {
				return err
			}
			w.ins[k] = st
		}
		w.args = appendInsertArgs(w.args[:0], es[:n])
		_, err := w.ins[k].ExecContext(ctx, w.args...)
		clear(w.args) // let the records go
		if err != nil {
			return err
		}
		es = es[n:]
	}
	return nil
}

// discard closes the statements and the connection itself (not back to
// the pool: it may be inside a transaction).
func (w *sqliteWriter) discard() {
	for _, st := range append([]*sql.Stmt{w.begin, w.commit, w.rollback}, w.ins[:]...) {
		if st != nil {
			st.Close()
		}
	}
	w.conn.Raw(func(any) error { return driver.ErrBadConn })
	w.conn.Close()
}

// isBusy reports whether err is SQLite's SQLITE_BUSY: another connection
// holds the write lock (its message is stable: sqlite3ErrStr).
func isBusy(err error) bool {
	return err != nil && strings.Contains(err.Error(), "database is locked")
}

func (s *sqliteDB) exec(ctx context.Context, q string, args ...any) (int64, error) {
	r, err := s.db.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return r.RowsAffected()
}

func (s *sqliteDB) each(ctx context.Context, q string, args []any, fn func(id, data, reportID string) error) error {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id, data, rid string
		if err := rows.Scan(&id, &data, &rid); err != nil {
			return err
		}
		if err := fn(id, data, rid); err != nil {
			return err
		}
	}
	return rows.Err()
}

func (s *sqliteDB) query(ctx context.Context, q string, args []any, fn func(scan func(dest ...any) error) error) error {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows.Scan); err != nil {
			return err
		}
	}
	return rows.Err()
}

func (s *sqliteDB) ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// tryLock takes a flock on a file beside the database: every process using
// this database file sees it.
func (s *sqliteDB) tryLock(_ context.Context, name string) (func(), bool, error) {
	f, err := os.OpenFile(s.path+"."+lockFileName(name)+".lock", os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, false, fmt.Errorf("store: lock: %w", err)
	}
	ok, err := tryFlock(f)
	if err != nil || !ok {
		f.Close()
		if err != nil {
			return nil, false, fmt.Errorf("store: lock: %w", err)
		}
		return nil, false, nil
	}
	return func() { f.Close() }, true, nil
}

func (s *sqliteDB) close() error {
	s.wmu.Lock()
	if s.w != nil {
		s.w.discard()
		s.w = nil
	}
	s.wmu.Unlock()
	return s.db.Close()
}

func lockFileName(name string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, name)
}

// appendInsertArgs appends the insertTuple arguments of es.
func appendInsertArgs(args []any, es []entry) []any {
	for _, e := range es {
		args = append(args, e.id, e.ts, e.rec.Reporter, e.rec.Policy.Domain, e.rec.HeaderFrom, e.rec.QueueID, e.data)
	}
	return args
}
