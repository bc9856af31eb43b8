package store

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
)

// Recorder is what the milter service calls at the end of each message:
// it builds the message's records and stores them, logging (never
// returning) failures, because a record problem must not hold up mail.
type Recorder struct {
	Store   *Store
	Exclude Exclusions
	Log     *slog.Logger
}

// Record builds m's records and puts them; in sync mode it returns once
// they are committed (to the database or the spool).
func (r *Recorder) Record(ctx context.Context, m Message) {
	recs := Build(m, r.Exclude)
	if len(recs) == 0 {
		return
	}
	// A lost record (ErrLost) has its log line from the store already.
	if err := r.Store.Put(ctx, recs...); err != nil && r.Log != nil && !errors.Is(err, ErrLost) {
		r.Log.Error("record not stored", "queue_id", m.QueueID, "err", err)
	}
}

// DefaultDir is the state directory used when none is configured:
// $STATE_DIRECTORY (systemd's StateDirectory=; the first one if several),
// else /var/lib/authmilter for root, else $XDG_STATE_HOME/authmilter or
// ~/.local/state/authmilter, so that the embedded defaults run both as a
// service and on a developer's machine.
func DefaultDir() string {
	if d := os.Getenv("STATE_DIRECTORY"); d != "" {
		return filepath.SplitList(d)[0]
	}
	if os.Geteuid() == 0 {
		return "/var/lib/authmilter"
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "authmilter")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "authmilter")
	}
	return filepath.Join(os.TempDir(), "authmilter")
}
