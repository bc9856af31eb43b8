package store

import (
	"context"
	"fmt"
	"hash/fnv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgDB is the shared backend for several MX hosts: every instance writes to
// one PostgreSQL database. A commit is durable when PostgreSQL says so
// (synchronous_commit is the server's business; its default, on, waits for
// the WAL flush).
type pgDB struct {
	pool *pgxpool.Pool
}

// migrationLock keys the advisory lock that serialises migrations of
// instances starting together.
const migrationLock = 0x61757468_6d696c74 // "authmilt"

func openPostgres(dsn string) (*pgDB, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The DSN may carry a password: do not echo it.
		return nil, fmt.Errorf("store: postgres_dsn: %w", ErrBadDSN)
	}
	if cfg.MaxConns < 4 {
		cfg.MaxConns = 4
	}
	// No connection is made here: a database that is down at start is an
	// outage like any other, handled by the spool.
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("store: postgres: %w", err)
	}
	return &pgDB{pool: pool}, nil
}

type pgTx struct{ tx pgx.Tx }

func (t pgTx) exec(ctx context.Context, q string, args ...any) (int64, error) {
	tag, err := t.tx.Exec(ctx, numbered(q), args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (t pgTx) queryInt(ctx context.Context, q string, args ...any) (int64, error) {
	var n int64
	err := t.tx.QueryRow(ctx, numbered(q), args...).Scan(&n)
	return n, err
}

func (p *pgDB) inTx(ctx context.Context, fn func(txer) error) error {
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error { return fn(pgTx{tx}) })
}

func (p *pgDB) migrate(ctx context.Context) error {
	return p.inTx(ctx, func(t txer) error {
		if _, err := t.exec(ctx, `SELECT pg_advisory_xact_lock(?)`, int64(migrationLock)); err != nil {
			return fmt.Errorf("store: migration lock: %w", err)
		}
		return migrate(ctx, t)
	})
}

// pgInsert[k] is the INSERT of 1<<k rows, numbered for PostgreSQL: a few
// fixed texts, which pgx prepares once per connection and caches.
var pgInsert = func() (q [insertSizes]string) {
	for k := range q {
		q[k] = numbered(insertQuery(1 << k))
	}
	return q
}()

// insert sends the INSERTs of es as one pipelined batch, without BEGIN and
// COMMIT round trips: PostgreSQL runs the statements before one Sync as one
// implicit transaction. Nothing depends on that beyond each statement's own
// atomicity: a record inserted twice (a retry, a replay) is ignored by id.
func (p *pgDB) insert(ctx context.Context, es []entry) error {
	var b pgx.Batch
	for len(es) > 0 {
		k := insertSize(len(es))
		n := 1 << k
		b.Queue(pgInsert[k], appendInsertArgs(make([]any, 0, 7*n), es[:n])...)
		es = es[n:]
	}
	return p.pool.SendBatch(ctx, &b).Close()
}

func (p *pgDB) exec(ctx context.Context, q string, args ...any) (int64, error) {
	tag, err := p.pool.Exec(ctx, numbered(q), args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (p *pgDB) each(ctx context.Context, q string, args []any, fn func(id, data, reportID string) error) error {
	rows, err := p.pool.Query(ctx, numbered(q), args...)
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

func (p *pgDB) query(ctx context.Context, q string, args []any, fn func(scan func(dest ...any) error) error) error {
	rows, err := p.pool.Query(ctx, numbered(q), args...)
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

func (p *pgDB) ping(ctx context.Context) error { return p.pool.Ping(ctx) }

// tryLock takes a session-level advisory lock (pg_try_advisory_lock) on a
// connection kept out of the pool until the release function runs. If that
// connection dies, PostgreSQL drops the lock with it.
func (p *pgDB) tryLock(ctx context.Context, name string) (func(), bool, error) {
	h := fnv.New64a()
	h.Write([]byte("authmilter:" + name))
	key := int64(h.Sum64())
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("store: lock: %w", err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
		conn.Release()
		return nil, false, fmt.Errorf("store: lock: %w", err)
	}
	if !ok {
		conn.Release()
		return nil, false, nil
	}
	return func() {
		if _, err := conn.Exec(context.Background(), `SELECT pg_advisory_unlock($1)`, key); err != nil {
			// The lock's fate is unknown: close the session, which drops it.
			conn.Conn().Close(context.Background())
		}
		conn.Release()
	}, true, nil
}

func (p *pgDB) close() error {
	p.pool.Close()
	return nil
}
