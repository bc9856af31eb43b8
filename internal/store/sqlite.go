package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"

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
type sqliteDB struct {
	path string
	db   *sql.DB
}

func openSQLite(path string) (*sqliteDB, error) {
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
		"&_txlock=immediate" // writers take the lock at BEGIN: no upgrade deadlocks between processes
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: sqlite %s: %w", path, err)
	}
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(4)
	return &sqliteDB{path: path, db: db}, nil
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

func (s *sqliteDB) insert(ctx context.Context, es []entry) error {
	return s.inTx(ctx, func(t txer) error { return insertEntries(ctx, t, es) })
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

func (s *sqliteDB) close() error { return s.db.Close() }

func lockFileName(name string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, name)
}

// insertEntries inserts es in slices of insertBatch rows.
func insertEntries(ctx context.Context, t txer, es []entry) error {
	for len(es) > 0 {
		n := min(len(es), insertBatch)
		args := make([]any, 0, n*7)
		for _, e := range es[:n] {
			args = append(args, e.id, e.ts, e.rec.Reporter, e.rec.Policy.Domain, e.rec.HeaderFrom, e.rec.QueueID, string(e.data))
		}
		if _, err := t.exec(ctx, insertQuery(n), args...); err != nil {
			return err
		}
		es = es[n:]
	}
	return nil
}
