package advisorylockotel_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
	advisorylockotel "github.com/advisorylock/advisorylock/otel"
)

// wantAttrs fails t unless span has each of want's attributes with its value.
func wantAttrs(t *testing.T, span sdktrace.ReadOnlySpan, want ...attribute.KeyValue) {
	t.Helper()
	got := attrs(span.Attributes())
	for _, kv := range want {
		if v, ok := got[kv.Key]; !ok {
			t.Errorf("%s span: no attribute %s; want %s", span.Name(), kv.Key, kv.Value.String())
		} else if v != kv.Value {
			t.Errorf("%s span: %s = %s; want %s", span.Name(), kv.Key, v.String(), kv.Value.String())
		}
	}
}

// wantNoAttrs fails t if span has any of keys.
func wantNoAttrs(t *testing.T, span sdktrace.ReadOnlySpan, keys ...attribute.Key) {
	t.Helper()
	got := attrs(span.Attributes())
	for _, k := range keys {
		if v, ok := got[k]; ok {
			t.Errorf("%s span: %s = %s; want no such attribute", span.Name(), k, v.String())
		}
	}
}

// seconds returns a float attribute of span, failing t when it is missing.
func seconds(t *testing.T, span sdktrace.ReadOnlySpan, k attribute.Key) time.Duration {
	t.Helper()
	v, ok := attrs(span.Attributes())[k]
	if !ok || v.Type() != attribute.FLOAT64 {
		t.Fatalf("%s span: %s = %v; want a float64 of seconds", span.Name(), k, v.String())
	}
	return time.Duration(v.AsFloat64() * float64(time.Second))
}

// childrenOf returns the ended spans whose parent is span.
func childrenOf(log *spanLog, span sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	var c []sdktrace.ReadOnlySpan
	for _, s := range log.Ended() {
		if s.Parent().SpanID() == span.SpanContext().SpanID() {
			c = append(c, s)
		}
	}
	return c
}

// queryUnder returns the query text of the pgx spans under span.
func queryUnder(log *spanLog, span sdktrace.ReadOnlySpan) []string {
	var q []string
	for _, c := range childrenOf(log, span) {
		if v, ok := attrs(c.Attributes())[queryTextKey]; ok {
			q = append(q, v.AsString())
		}
	}
	return q
}

func anyContains(ss []string, sub string) bool {
	for _, s := range ss {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// WithLock makes an acquire span and a hold span, siblings under the caller's
// span; the lock's statements show under the acquire span, the function's and
// the release under the hold span, which links to the acquire span.
func TestHook_withLock(t *testing.T) {
	// Serial: a span's duration and its wait attribute must agree within 5ms.
	tests := []struct {
		scope   advisorylock.Option
		lockSQL string // in the statement that takes the lock
		release string // in the statement that releases it
	}{
		// pgx traces the statements of pooled connections: a session lock
		// pinning one, and a transaction-scoped lock. (Lock sessions speak
		// the protocol themselves; pgx does not see their statements.)
		{advisorylock.PinConnection(), "pg_advisory_lock", "pg_advisory_unlock"},
		{advisorylock.TransactionScope(), "pg_advisory_xact_lock", "commit"},
	}
	for _, tt := range tests {
		tp, log := newTracing(t)
		pool := pgtest.NewPool(t, pgtest.Database(t), tracePgx(tp))
		hook := advisorylockotel.NewHook(advisorylockotel.WithTracerProvider(tp))
		m := advisorylock.New(pool, "report", tt.scope, advisorylock.WithHooks(hook))
		t.Run(m.Scope().String(), func(t *testing.T) {
			ctx, parent := tp.Tracer("test").Start(t.Context(), "request")
			_, err := advisorylock.WithLock(ctx, m, func(ctx context.Context) (int, error) {
				q := pool.QueryRow
				if l, _ := advisorylock.LockFromContext(ctx); l.Tx() != nil {
					tx := l.Tx()
					q = tx.QueryRow
				}
				var s string
				return 0, q(ctx, "select 'in fn'").Scan(&s)
			})
			parent.End()
			if err != nil {
				t.Fatal(err)
			}
			request := log.one(t, "request")
			acquire, hold := log.one(t, advisorylockotel.AcquireSpanName), log.one(t, advisorylockotel.HoldSpanName)

			for _, s := range []sdktrace.ReadOnlySpan{acquire, hold} {
				if s.Parent().SpanID() != request.SpanContext().SpanID() {
					t.Errorf("%s span's parent is %v; want the caller's span %v", s.Name(), s.Parent().SpanID(), request.SpanContext().SpanID())
				}
				if got := s.InstrumentationScope(); got.Name != advisorylockotel.ScopeName || got.Version != advisorylockotel.Version || got.SchemaURL != semconv.SchemaURL {
					t.Errorf("%s span's scope = %+v; want %s %s %s", s.Name(), got, advisorylockotel.ScopeName, advisorylockotel.Version, semconv.SchemaURL)
				}
				if s.Status().Code != codes.Unset {
					t.Errorf("%s span's status = %v; want Unset", s.Name(), s.Status())
				}
				wantAttrs(t, s,
					semconv.DBSystemNamePostgreSQL,
					advisorylockotel.LockKeyKey.String(m.Key().String()),
					advisorylockotel.LockModeKey.String("exclusive"),
					advisorylockotel.LockScopeKey.String(m.Scope().String()),
					advisorylockotel.LockNameHashKey.String(advisorylockotel.HashLockName("report")))
				wantNoAttrs(t, s, advisorylockotel.LockNameKey, semconv.ErrorTypeKey)
			}

			if acquire.SpanKind() != trace.SpanKindClient {
				t.Errorf("acquire span kind = %v; want client", acquire.SpanKind())
			}
			wantAttrs(t, acquire,
				advisorylockotel.TryKey.Bool(false),
				advisorylockotel.OutcomeKey.String("acquired"))
			wantNoAttrs(t, acquire, advisorylockotel.TimeoutKey)
			if q := queryUnder(log, acquire); !anyContains(q, tt.lockSQL) {
				t.Errorf("statements under the acquire span: %q; want the lock call %s", q, tt.lockSQL)
			}

			if hold.SpanKind() != trace.SpanKindInternal {
				t.Errorf("hold span kind = %v; want internal", hold.SpanKind())
			}
			wantNoAttrs(t, hold, advisorylockotel.LostKey, advisorylockotel.OutcomeKey, advisorylockotel.TryKey)
			if hold.StartTime().Before(acquire.EndTime()) {
				t.Errorf("hold span starts at %v, before the acquire span ends at %v", hold.StartTime(), acquire.EndTime())
			}
			if links := hold.Links(); len(links) != 0 {
				t.Errorf("hold span's links = %+v; want none: the spans are siblings", links)
			}
			q := queryUnder(log, hold)
			if !anyContains(q, "in fn") {
				t.Errorf("statements under the hold span: %q; want fn's", q)
			}
			if !anyContains(q, tt.release) {
				t.Errorf("statements under the hold span: %q; want the release %s", q, tt.release)
			}
		})
	}
}

// Each failed acquisition ends its span with its outcome; only a busy TryLock
// is not an error.
func TestHook_acquireOutcomes(t *testing.T) {
	// Serial: the server's lock_timeout (55P03) must answer within the client's 250ms grace.
	dsn := pgtest.Database(t)
	pool := pgtest.NewPool(t, dsn)
	// The holder is on a pool of its own, as in another process.
	holder, err := advisorylock.New(pgtest.NewPool(t, dsn), "held").Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Unlock(context.Background())
	closed, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()

	const bound = 100 * time.Millisecond
	tests := []struct {
		name      string
		pool      *pgxpool.Pool
		opts      []advisorylock.Option
		try       bool
		cancel    bool
		outcome   string
		errorType string // "" for an unset status
		sqlstate  string // db.response.status_code, if any
	}{
		{name: "busy", pool: pool, try: true, outcome: "busy"},
		{name: "busy in transaction scope", pool: pool, try: true, opts: []advisorylock.Option{advisorylock.TransactionScope()}, outcome: "busy"},
		{name: "timeout", pool: pool, opts: []advisorylock.Option{advisorylock.WithTimeout(bound)}, outcome: "timeout", errorType: "timeout", sqlstate: "55P03"},
		{name: "timeout in transaction scope", pool: pool, opts: []advisorylock.Option{advisorylock.WithTimeout(bound), advisorylock.TransactionScope()}, outcome: "timeout", errorType: "timeout", sqlstate: "55P03"},
		// The server ends a cancelled wait with query_canceled.
		{name: "canceled", pool: pool, cancel: true, outcome: "canceled", errorType: "canceled", sqlstate: "57014"},
		// Lock sessions are not the pool's: a pinned connection meets the
		// closed pool.
		{name: "error", pool: closed, opts: []advisorylock.Option{advisorylock.PinConnection()}, outcome: "error", errorType: "_OTHER"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp, log := newTracing(t)
			m := advisorylock.New(tt.pool, "held", append(tt.opts, advisorylock.WithHooks(advisorylockotel.NewHook(advisorylockotel.WithTracerProvider(tp))))...)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			errc := make(chan error, 1)
			go func() {
				var err error
				if tt.try {
					_, err = m.TryLock(ctx)
				} else {
					_, err = m.Lock(ctx)
				}
				errc <- err
			}()
			if tt.cancel {
				pgtest.AwaitWaiters(t, pool, 1)
				cancel()
			}
			if err := <-errc; err == nil {
				t.Fatal("acquired a held lock")
			}

			span := log.one(t, advisorylockotel.AcquireSpanName)
			if n := len(log.named(advisorylockotel.HoldSpanName)); n != 0 {
				t.Errorf("%d hold spans after a failed acquisition; want 0", n)
			}
			wantAttrs(t, span,
				advisorylockotel.OutcomeKey.String(tt.outcome),
				advisorylockotel.TryKey.Bool(tt.try),
				semconv.DBSystemNamePostgreSQL)
			if w := span.EndTime().Sub(span.StartTime()); tt.outcome == "timeout" && w < bound {
				t.Errorf("span's duration = %v; want at least the bound %v", w, bound)
			}
			if tt.outcome == "timeout" {
				if got := seconds(t, span, advisorylockotel.TimeoutKey); math.Abs(got.Seconds()-bound.Seconds()) > 0.001 {
					t.Errorf("timeout = %v; want %v", got, bound)
				}
			}
			if tt.errorType == "" {
				if span.Status().Code != codes.Unset {
					t.Errorf("status = %+v; want Unset: a busy TryLock is an answer, not a failure", span.Status())
				}
				wantNoAttrs(t, span, semconv.ErrorTypeKey, semconv.DBResponseStatusCodeKey)
				return
			}
			if span.Status().Code != codes.Error || span.Status().Description == "" {
				t.Errorf("status = %+v; want Error with a description", span.Status())
			}
			wantAttrs(t, span, semconv.ErrorTypeKey.String(tt.errorType))
			if tt.sqlstate != "" {
				wantAttrs(t, span, semconv.DBResponseStatusCode(tt.sqlstate))
			} else {
				wantNoAttrs(t, span, semconv.DBResponseStatusCodeKey)
			}
		})
	}
}

// A held lock whose session the server ends has its hold span ended as an
// error, with a lost event and the time it was held.
func TestHook_lost(t *testing.T) {
	t.Parallel()
	for _, scope := range []advisorylock.Option{nil, advisorylock.TransactionScope()} {
		tp, log := newTracing(t)
		pool := pgtest.NewPool(t, pgtest.Database(t))
		m := advisorylock.New(pool, "lost", scope, advisorylock.WithHooks(advisorylockotel.NewHook(advisorylockotel.WithTracerProvider(tp))))
		t.Run(m.Scope().String(), func(t *testing.T) {
			_, err := advisorylock.WithLock(t.Context(), m, func(ctx context.Context) (int, error) {
				pgtest.TerminateHolder(t, pool)
				if l, _ := advisorylock.LockFromContext(ctx); l.Tx() != nil {
					tx := l.Tx()
					// A transaction-scoped lock notices at its next statement.
					_, _ = tx.Exec(ctx, "select 1")
				}
				<-ctx.Done()
				if err := context.Cause(ctx); !errors.Is(err, advisorylock.ErrLockLost) {
					t.Errorf("fn's context cause = %v; want ErrLockLost", err)
				}
				return 0, nil
			})
			if !errors.Is(err, advisorylock.ErrLockLost) {
				t.Errorf("WithLock = %v; want ErrLockLost", err)
			}
			hold := log.await(t, advisorylockotel.HoldSpanName, 1)[0]
			if st := hold.Status(); st.Code != codes.Error || !strings.Contains(st.Description, "lock lost") {
				t.Errorf("hold span status = %+v; want Error, lock lost", st)
			}
			wantAttrs(t, hold,
				advisorylockotel.LostKey.Bool(true),
				semconv.ErrorTypeKey.String("lock_lost"))
			events := hold.Events()
			if len(events) != 1 || events[0].Name != advisorylockotel.LostEventName {
				t.Fatalf("hold span events = %+v; want one %s", events, advisorylockotel.LostEventName)
			}
			if ev := events[0].Time; ev.Before(hold.StartTime()) || ev.After(hold.EndTime()) {
				t.Errorf("lost event at %v; want within the hold span, %v to %v", ev, hold.StartTime(), hold.EndTime())
			}
			ev := attrs(events[0].Attributes)
			if v := ev[semconv.ErrorTypeKey]; v.AsString() != "lock_lost" {
				t.Errorf("lost event's error.type = %q; want lock_lost", v.AsString())
			}
			wantAttrs(t, log.one(t, advisorylockotel.AcquireSpanName), advisorylockotel.OutcomeKey.String("acquired"))
		})
	}
}

// Without a span in the caller's context, the acquire and hold spans each
// start a trace, and the hold span links to the acquire span.
func TestHook_noParent(t *testing.T) {
	t.Parallel()
	tp, log := newTracing(t)
	pool := pgtest.NewPool(t, pgtest.Database(t))
	m := advisorylock.New(pool, "root", advisorylock.WithHooks(advisorylockotel.NewHook(advisorylockotel.WithTracerProvider(tp))))
	if _, err := advisorylock.WithLock(context.Background(), m, func(context.Context) (int, error) { return 0, nil }); err != nil {
		t.Fatal(err)
	}
	acquire, hold := log.one(t, advisorylockotel.AcquireSpanName), log.one(t, advisorylockotel.HoldSpanName)
	for _, s := range []sdktrace.ReadOnlySpan{acquire, hold} {
		if s.Parent().IsValid() {
			t.Errorf("%s span has parent %v; want none", s.Name(), s.Parent().SpanID())
		}
	}
	if links := hold.Links(); len(links) != 1 || links[0].SpanContext.SpanID() != acquire.SpanContext().SpanID() {
		t.Errorf("hold span's links = %+v; want one, to the acquire span", links)
	}
}

// Two Hooks combined with MultiHook each keep their own spans, and end each
// once.
func TestHook_multi(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t, pgtest.Database(t))
	tp1, log1 := newTracing(t)
	tp2, log2 := newTracing(t)
	m := advisorylock.New(pool, "multi", advisorylock.WithHooks(advisorylock.MultiHook(
		advisorylockotel.NewHook(advisorylockotel.WithTracerProvider(tp1)),
		advisorylockotel.NewHook(advisorylockotel.WithTracerProvider(tp2)),
	)))
	if _, err := advisorylock.WithLock(t.Context(), m, func(context.Context) (int, error) { return 0, nil }); err != nil {
		t.Fatal(err)
	}
	for i, log := range []*spanLog{log1, log2} {
		if n := len(log.Ended()); n != 2 {
			t.Fatalf("provider %d: %d spans ended; want 2", i+1, n)
		}
		wantAttrs(t, log.one(t, advisorylockotel.AcquireSpanName), advisorylockotel.OutcomeKey.String("acquired"))
		if _, ok := attrs(log.one(t, advisorylockotel.HoldSpanName).Attributes())[advisorylockotel.LockKeyKey]; !ok {
			t.Errorf("provider %d: hold span without %s; want it ended by its own Hook", i+1, advisorylockotel.LockKeyKey)
		}
	}
}

// A nil or zero Hook records nothing and does not get in the way.
func TestHook_nilAndZero(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t, pgtest.Database(t))
	m := advisorylock.New(pool, "zero", advisorylock.WithHooks((*advisorylockotel.Hook)(nil), &advisorylockotel.Hook{}))
	if _, err := advisorylock.WithLock(t.Context(), m, func(context.Context) (int, error) { return 0, nil }); err != nil {
		t.Fatal(err)
	}
}

// Without WithTracerProvider and WithMeterProvider, or with nil, the global
// providers are used.
func TestNewHook_globalProviders(t *testing.T) {
	// Serial: it sets OpenTelemetry's global providers.
	prevTP, prevMP := otel.GetTracerProvider(), otel.GetMeterProvider()
	t.Cleanup(func() {
		otel.SetTracerProvider(prevTP)
		otel.SetMeterProvider(prevMP)
	})
	tp, log := newTracing(t)
	mp, reader := newMetering(t)
	otel.SetTracerProvider(tp)
	otel.SetMeterProvider(mp)
	hook := advisorylockotel.NewHook(advisorylockotel.WithTracerProvider(nil), advisorylockotel.WithMeterProvider(nil))

	pool := pgtest.NewPool(t, pgtest.Database(t))
	l, err := advisorylock.New(pool, "global", advisorylock.WithHooks(hook)).TryLock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(log.named(advisorylockotel.AcquireSpanName)); n != 1 {
		t.Errorf("%d acquire spans in the global TracerProvider; want 1", n)
	}
	if _, ok := collect(t, reader)[advisorylockotel.AcquisitionsName]; !ok {
		t.Errorf("no %s in the global MeterProvider", advisorylockotel.AcquisitionsName)
	}
}

// With the no-op providers, the Hook does nothing: the contexts it is given
// are the ones it returns.
func TestHook_noopProviders(t *testing.T) {
	t.Parallel()
	hook := advisorylockotel.NewHook(advisorylockotel.WithTracerProvider(tracenoop.NewTracerProvider()), advisorylockotel.WithMeterProvider(metricnoop.NewMeterProvider()))
	pool := pgtest.NewPool(t, pgtest.Database(t))
	m := advisorylock.New(pool, "noop", advisorylock.WithHooks(hook))
	ctx := t.Context()
	if got := hook.AcquireStart(ctx, m, advisorylock.AcquireStartData{}); got != ctx {
		t.Errorf("AcquireStart returned a new context %v; want its own", got)
	}
	_, err := advisorylock.WithLock(ctx, m, func(ctx context.Context) (int, error) {
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			t.Errorf("fn's context has span %v; want none", sc)
		}
		return 0, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Spans a sampler drops are not recorded, and the metrics still are.
func TestHook_unsampled(t *testing.T) {
	t.Parallel()
	log := &spanLog{SpanRecorder: tracetest.NewSpanRecorder(), changed: make(chan struct{})}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(log), sdktrace.WithSampler(sdktrace.NeverSample()))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	mp, reader := newMetering(t)
	pool := pgtest.NewPool(t, pgtest.Database(t))
	m := advisorylock.New(pool, "unsampled", advisorylock.WithHooks(advisorylockotel.NewHook(advisorylockotel.WithTracerProvider(tp), advisorylockotel.WithMeterProvider(mp))))
	if _, err := advisorylock.WithLock(t.Context(), m, func(context.Context) (int, error) { return 0, nil }); err != nil {
		t.Fatal(err)
	}
	if n := len(log.Ended()); n != 0 {
		t.Errorf("%d spans recorded; want none", n)
	}
	ms := collect(t, reader)
	if got, _ := sumPoint(t, ms[advisorylockotel.AcquisitionsName],
		advisorylockotel.LockModeKey.String("exclusive"), advisorylockotel.LockScopeKey.String("session"),
		advisorylockotel.TryKey.Bool(false), advisorylockotel.OutcomeKey.String("acquired")); got != 1 {
		t.Errorf("%s = %d; want 1", advisorylockotel.AcquisitionsName, got)
	}
	if p, ok := histogramPoint(t, ms[advisorylockotel.HoldDurationName],
		advisorylockotel.LockModeKey.String("exclusive"), advisorylockotel.LockScopeKey.String("session")); !ok || p.Count != 1 {
		t.Errorf("%s count = %d; want 1", advisorylockotel.HoldDurationName, p.Count)
	}
}

// A Hook that sees more locks than its table of lock telemetry holds, from
// goroutines running at once, records each span with its own lock's
// attributes: locks whose slots collide rebuild theirs, and Mutexes of one
// name share them.
func TestHook_manyLocks(t *testing.T) {
	t.Parallel()
	tp, log := newTracing(t)
	mp, reader := newMetering(t)
	pool := pgtest.NewPool(t, pgtest.Database(t))
	hook := advisorylockotel.NewHook(advisorylockotel.WithTracerProvider(tp), advisorylockotel.WithMeterProvider(mp))
	const names, workers = 600, 4
	errc := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := range names {
				// Each worker goes through every name, from its own start,
				// with a Mutex of its own: half of them in shared mode.
				n := (i + w*names/workers) % names
				opts := []advisorylock.Option{advisorylock.WithHooks(hook)}
				if n%2 == 1 {
					opts = append(opts, advisorylock.Shared())
				}
				l, err := advisorylock.New(pool, fmt.Sprintf("lock-%d", n), opts...).Lock(t.Context())
				if err == nil {
					err = l.Unlock(t.Context())
				}
				if err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
	}
	for range workers {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	spans := log.Ended()
	if len(spans) != 2*names*workers {
		t.Fatalf("%d spans; want %d", len(spans), 2*names*workers)
	}
	byHash := map[string]int{}
	for n := range names {
		byHash[advisorylockotel.HashLockName(fmt.Sprintf("lock-%d", n))] = n
	}
	for _, s := range spans {
		got := attrs(s.Attributes())
		n, ok := byHash[got[advisorylockotel.LockNameHashKey].AsString()]
		if !ok {
			t.Fatalf("%s span: name hash %q is no lock's", s.Name(), got[advisorylockotel.LockNameHashKey].AsString())
		}
		mode := "exclusive"
		if n%2 == 1 {
			mode = "shared"
		}
		wantAttrs(t, s,
			advisorylockotel.LockKeyKey.String(advisorylock.KeyFromName(fmt.Sprintf("lock-%d", n)).String()),
			advisorylockotel.LockModeKey.String(mode))
	}
	if got, _ := sumPoint(t, collect(t, reader)[advisorylockotel.AcquisitionsName],
		advisorylockotel.LockModeKey.String("shared"), advisorylockotel.LockScopeKey.String("session"),
		advisorylockotel.TryKey.Bool(false), advisorylockotel.OutcomeKey.String("acquired")); got != names*workers/2 {
		t.Errorf("shared acquisitions = %d; want %d", got, names*workers/2)
	}
}

// A locked section allocates no more with the Hook, spans recorded and
// metrics measured, than with the reference hook of the benchmarks, which
// emits the least telemetry the SDK can: the Hook makes one allocation of its
// own, and saves the SDK one copy of each span's attributes.
func TestHook_allocations(t *testing.T) {
	tp, _ := newTracing(t)
	mp, _ := newMetering(t)
	m := advisorylock.New(pgtest.NewPool(t, pgtest.Database(t)), "allocations")
	l, err := m.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock(context.Background())
	ctx := underRemoteParent()
	section := func(h sectionHook) float64 {
		return testing.AllocsPerRun(100, func() { hookSection(ctx, h, l) })
	}
	reference := section(newReferenceHook(t, tp, mp, m))
	got := section(advisorylockotel.NewHook(advisorylockotel.WithTracerProvider(tp), advisorylockotel.WithMeterProvider(mp)))
	if got > reference {
		t.Errorf("the Hook allocates %v times a section; want at most the reference hook's %v", got, reference)
	}
	t.Logf("allocations a section: Hook %v, reference %v", got, reference)
}
