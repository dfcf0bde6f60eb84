package advisorylockslog_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
	advisorylockslog "github.com/advisorylock/advisorylock/slog"
)

// The records of a fenced lock carry its token (token); those of a lock
// without fencing do not.
func TestHook_token(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t, pgtest.Database(t))
	for _, fenced := range []bool{true, false} {
		logger, out := newLogger(slog.LevelDebug)
		hook := advisorylockslog.NewHook(logger, advisorylockslog.WithWaitThreshold(0), advisorylockslog.WithHoldThreshold(0))
		opts := []advisorylock.Option{advisorylock.WithHooks(hook)}
		if fenced {
			opts = append(opts, advisorylock.WithFencing())
		}
		tok, err := advisorylock.WithLock(t.Context(), advisorylock.New(pool, "token", opts...), func(ctx context.Context) (int64, error) {
			l, _ := advisorylock.LockFromContext(ctx)
			return l.Token(), nil
		})
		if err != nil {
			t.Fatal(err)
		}
		rs := out.await(t, 2) // the long wait, then the long hold
		for _, r := range rs {
			got, ok := r.get("token").(float64)
			switch {
			case fenced && (!ok || int64(got) != tok):
				t.Errorf("record %v: token = %v; want %d", r, r.get("token"), tok)
			case !fenced && r.has("token"):
				t.Errorf("record %v of a lock without fencing has a token", r)
			}
		}
	}
}
