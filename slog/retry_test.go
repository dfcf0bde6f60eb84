package advisorylockslog_test

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
	advisorylockslog "github.com/advisorylock/advisorylock/slog"
)

// A wait whose backend is terminated, and which therefore waits again, is
// logged once, at warn: which retry, the pause, and why.
func TestHook_retry(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Database(t)
	pool, other := pgtest.NewPool(t, dsn), pgtest.NewPool(t, dsn)
	ctx := t.Context()
	holder, err := advisorylock.New(other, "retry").Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	logger, out := newLogger(slog.LevelDebug)
	m := advisorylock.New(pool, "retry", advisorylock.WithHooks(advisorylockslog.NewHook(logger,
		advisorylockslog.WithWaitThreshold(-1)))) // no long-wait record
	errc := make(chan error, 1)
	go func() {
		l, err := m.Lock(ctx)
		if err == nil {
			err = l.Unlock(ctx)
		}
		errc <- err
	}()
	pgtest.AwaitWaiters(t, other, 1)
	pgtest.Terminate(t, other, pgtest.AdvisoryLockPIDs(t, other, "not granted")[0])
	r := out.await(t, 1)[0]
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("Lock after its wait lost its backend = %v; want the lock", err)
	}
	if r.str("level") != "WARN" || r.str("msg") != advisorylockslog.EventRetry.String() {
		t.Errorf("level, msg = %s, %q; want WARN, %q", r.str("level"), r.str("msg"), advisorylockslog.EventRetry)
	}
	wantLock(t, r, m)
	if n, _ := r.get("retry").(float64); n != 1 {
		t.Errorf("retry = %v; want 1", r.get("retry"))
	}
	if d := r.duration(t, "delay"); d <= 0 {
		t.Errorf("delay = %v; want a pause", d)
	}
	if got := r.str("err"); !strings.Contains(got, "57P01") {
		t.Errorf("err = %q; want the termination (SQLSTATE 57P01)", got)
	}
	if rs := out.records(t); len(rs) != 1 {
		t.Errorf("%d records; want the retry's alone", len(rs))
	}
}
