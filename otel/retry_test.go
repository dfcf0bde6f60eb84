package advisorylockotel_test

import (
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
	advisorylockotel "github.com/advisorylock/advisorylock/otel"
)

// A wait whose backend is terminated waits again: its acquisition's span gets
// a retry event saying why, the retries counter counts it, and the span ends
// acquired.
func TestHook_retry(t *testing.T) {
	t.Parallel()
	tp, log := newTracing(t)
	mp, reader := newMetering(t)
	dsn := pgtest.Database(t)
	pool, other := pgtest.NewPool(t, dsn), pgtest.NewPool(t, dsn)
	ctx := t.Context()
	holder, err := advisorylock.New(other, "retry").Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hook := advisorylockotel.NewHook(advisorylockotel.WithTracerProvider(tp), advisorylockotel.WithMeterProvider(mp))
	m := advisorylock.New(pool, "retry", advisorylock.WithHooks(hook))
	errc := make(chan error, 1)
	var l *advisorylock.Lock
	go func() {
		var err error
		l, err = m.Lock(ctx)
		errc <- err
	}()
	pgtest.AwaitWaiters(t, other, 1)
	first := pgtest.AdvisoryLockPIDs(t, other, "not granted")[0]
	pgtest.Terminate(t, other, first)
	awaitSum(t, reader, advisorylockotel.RetriesName, 1,
		advisorylockotel.LockModeKey.String("exclusive"), advisorylockotel.LockScopeKey.String("session"))
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("Lock after its wait lost its backend = %v; want the lock", err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}

	span := log.await(t, advisorylockotel.AcquireSpanName, 1)[0]
	wantAttrs(t, span, advisorylockotel.OutcomeKey.String("acquired"))
	var retries int
	for _, e := range span.Events() {
		if e.Name != advisorylockotel.RetryEventName {
			continue
		}
		retries++
		a := attrs(e.Attributes)
		if got := a[advisorylockotel.RetryKey]; got != attribute.IntValue(1) {
			t.Errorf("retry event's %s = %v; want 1", advisorylockotel.RetryKey, got.String())
		}
		if got := a[semconv.ErrorTypeKey]; got.AsString() != "57P01" {
			t.Errorf("retry event's %s = %q; want the termination's SQLSTATE 57P01", semconv.ErrorTypeKey, got.String())
		}
		if d := a[advisorylockotel.RetryDelayKey].AsFloat64(); d <= 0 || d > time.Minute.Seconds() {
			t.Errorf("retry event's %s = %v; want a pause", advisorylockotel.RetryDelayKey, d)
		}
	}
	if retries != 1 {
		t.Errorf("%d retry events on the acquire span; want 1", retries)
	}
}
