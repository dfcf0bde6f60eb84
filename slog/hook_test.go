package advisorylockslog_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
	advisorylockslog "github.com/advisorylock/advisorylock/slog"
)

// wantLock fails t unless r's lock group describes m, with its name hashed.
func wantLock(t *testing.T, r record, m *advisorylock.Mutex) {
	t.Helper()
	want := map[string]string{
		"lock.key":       m.Key().String(),
		"lock.name_hash": hash(m.Name()),
		"lock.mode":      m.Mode().String(),
		"lock.scope":     m.Scope().String(),
	}
	for k, v := range want {
		if got := r.str(k); got != v {
			t.Errorf("%s = %q; want %q", k, got, v)
		}
	}
	if r.has("lock.name") {
		t.Errorf("lock.name = %q; want none: names are hashed by default", r.str("lock.name"))
	}
}

// Each event is logged once, at its level, with the lock, the wait or the
// time held, the outcome of a long wait and the error; what is not an event
// is not logged.
func TestHook_events(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Database(t)
	pool, other := pgtest.NewPool(t, dsn), pgtest.NewPool(t, dsn)
	closed, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()

	const bound = 100 * time.Millisecond
	tests := []struct {
		name   string
		opts   []advisorylockslog.Option
		pool   *pgxpool.Pool
		held   bool // by another session, throughout
		lock   func(ctx context.Context, m *advisorylock.Mutex) error
		cancel bool // cancel the wait once it waits in the server
		// The record wanted, if any.
		level, msg string
		key        string // "wait" or "held"
		least      time.Duration
		outcome    string
		err        string // in err; "" for no err
	}{
		{name: "long wait", opts: []advisorylockslog.Option{advisorylockslog.WithWaitThreshold(0)}, lock: withLock,
			level: "INFO", msg: "advisorylock: long wait", key: "wait", outcome: "acquired"},
		{name: "wait under the threshold", lock: withLock},
		{name: "no wait logged", opts: []advisorylockslog.Option{advisorylockslog.WithWaitThreshold(-1)}, lock: withLock},
		{name: "busy", opts: []advisorylockslog.Option{advisorylockslog.WithWaitThreshold(0)}, held: true, lock: tryLock},
		{name: "timeout", held: true, lock: lockWithin(bound),
			level: "WARN", msg: "advisorylock: timeout", key: "wait", least: bound, err: "context deadline exceeded"},
		{name: "long wait cancelled", opts: []advisorylockslog.Option{advisorylockslog.WithWaitThreshold(0)}, held: true, lock: lock, cancel: true,
			level: "INFO", msg: "advisorylock: long wait", key: "wait", outcome: "canceled", err: "context canceled"},
		{name: "cancelled under the threshold", held: true, lock: lock, cancel: true},
		{name: "error", pool: closed, lock: lock,
			level: "ERROR", msg: "advisorylock: error", key: "wait", err: "closed pool"},
		{name: "long hold", opts: []advisorylockslog.Option{advisorylockslog.WithHoldThreshold(0)}, lock: withLock,
			level: "INFO", msg: "advisorylock: long hold", key: "held"},
		{name: "hold under the threshold", opts: []advisorylockslog.Option{advisorylockslog.WithHoldThreshold(time.Hour)}, lock: withLock},
		{name: "no hold logged by default", lock: withLock},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logger, out := newLogger(slog.LevelDebug)
			p := tt.pool
			if p == nil {
				p = pool
			}
			opts := []advisorylock.Option{advisorylock.WithHooks(advisorylockslog.NewHook(logger, tt.opts...))}
			if p == closed {
				// Lock sessions are not the pool's: a pinned connection
				// meets the closed pool.
				opts = append(opts, advisorylock.PinConnection())
			}
			m := advisorylock.New(p, "events", opts...)
			if tt.held {
				holder, err := advisorylock.New(other, "events").Lock(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				defer holder.Unlock(context.Background())
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			errc := make(chan error, 1)
			go func() { errc <- tt.lock(ctx, m) }()
			if tt.cancel {
				pgtest.AwaitWaiters(t, pool, 1)
				cancel()
			}
			err := <-errc
			if (err != nil) != (tt.held || tt.pool != nil) {
				t.Fatalf("lock: %v", err)
			}

			if tt.msg == "" {
				if lines := out.lines(); len(lines) != 0 {
					t.Fatalf("records %q; want none", lines)
				}
				return
			}
			r := out.one(t)
			if r.str("level") != tt.level || r.str("msg") != tt.msg {
				t.Errorf("level, msg = %s, %q; want %s, %q", r.str("level"), r.str("msg"), tt.level, tt.msg)
			}
			wantLock(t, r, m)
			if d := r.duration(t, tt.key); d <= 0 || d < tt.least {
				t.Errorf("%s = %v; want > 0 and at least %v", tt.key, d, tt.least)
			}
			if got := r.str("outcome"); got != tt.outcome {
				t.Errorf("outcome = %q; want %q", got, tt.outcome)
			}
			switch got := r.str("err"); {
			case tt.err == "" && r.has("err"):
				t.Errorf("err = %q; want none", got)
			case !strings.Contains(got, tt.err):
				t.Errorf("err = %q; want it to say %q", got, tt.err)
			case tt.err != "" && (strings.Contains(got, "events") || !strings.Contains(got, "key "+m.Key().String())):
				t.Errorf("err = %q; want the lock named by its key, not its name", got)
			}
		})
	}
}

func lock(ctx context.Context, m *advisorylock.Mutex) error {
	l, err := m.Lock(ctx)
	if err != nil {
		return err
	}
	return l.Unlock(ctx)
}

func tryLock(ctx context.Context, m *advisorylock.Mutex) error {
	l, err := m.TryLock(ctx)
	if err != nil {
		return err
	}
	return l.Unlock(ctx)
}

func withLock(ctx context.Context, m *advisorylock.Mutex) error {
	_, err := advisorylock.WithLock(ctx, m, func(context.Context) (int, error) { return 0, nil })
	return err
}

func lockWithin(d time.Duration) func(context.Context, *advisorylock.Mutex) error {
	return func(ctx context.Context, m *advisorylock.Mutex) error {
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		return lock(ctx, m)
	}
}

// A lock lost while held is logged once, as lost, with the time it was held
// and the loss, whatever the hold threshold; its release is not logged again.
func TestHook_lost(t *testing.T) {
	t.Parallel()
	for _, scope := range []advisorylock.Option{nil, advisorylock.TransactionScope()} {
		logger, out := newLogger(slog.LevelDebug)
		pool := pgtest.NewPool(t, pgtest.Database(t))
		hook := advisorylockslog.NewHook(logger, advisorylockslog.WithHoldThreshold(0), advisorylockslog.WithWaitThreshold(-1))
		m := advisorylock.New(pool, "lost", scope, advisorylock.WithHooks(hook))
		t.Run(m.Scope().String(), func(t *testing.T) {
			_, err := advisorylock.WithLock(t.Context(), m, func(ctx context.Context) (int, error) {
				pgtest.TerminateHolder(t, pool)
				if l, _ := advisorylock.LockFromContext(ctx); l.Tx() != nil {
					tx := l.Tx()
					// A transaction-scoped lock notices at its next statement.
					_, _ = tx.Exec(ctx, "select 1")
				}
				<-ctx.Done()
				return 0, nil
			})
			if !errors.Is(err, advisorylock.ErrLockLost) {
				t.Errorf("WithLock = %v; want ErrLockLost", err)
			}
			r := out.await(t, 1)[0]
			if r.str("level") != "ERROR" || r.str("msg") != "advisorylock: lock lost" {
				t.Errorf("level, msg = %s, %q; want ERROR, %q", r.str("level"), r.str("msg"), "advisorylock: lock lost")
			}
			wantLock(t, r, m)
			if d := r.duration(t, "held"); d <= 0 {
				t.Errorf("held = %v; want > 0", d)
			}
			if e := r.str("err"); !strings.Contains(e, "lock lost") || strings.Contains(e, `"lost"`) {
				t.Errorf("err = %q; want the loss, naming the lock by its key", e)
			}
			// HoldEnd follows LockLost at once, on the same goroutine: a
			// record of it would be written by the time of this check.
			if lines := out.lines(); len(lines) != 1 {
				t.Errorf("records %q; want the loss alone", lines)
			}
		})
	}
}

// An event's level is the one WithLevel sets, and a level the logger does not
// enable turns it off.
func TestHook_levels(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t, pgtest.Database(t))
	tests := []struct {
		name    string
		enabled slog.Level
		opts    []advisorylockslog.Option
		want    string // the record's level; "" for none
	}{
		{"default", slog.LevelInfo, nil, "INFO"},
		{"raised", slog.LevelInfo, []advisorylockslog.Option{advisorylockslog.WithLevel(advisorylockslog.EventHold, slog.LevelWarn)}, "WARN"},
		{"lowered below the logger's", slog.LevelInfo, []advisorylockslog.Option{advisorylockslog.WithLevel(advisorylockslog.EventHold, slog.LevelDebug)}, ""},
		{"logger above the default", slog.LevelWarn, nil, ""},
		{"another event's level", slog.LevelWarn, []advisorylockslog.Option{advisorylockslog.WithLevel(advisorylockslog.EventWait, slog.LevelWarn)}, ""},
		{"no such event", slog.LevelInfo, []advisorylockslog.Option{advisorylockslog.WithLevel(advisorylockslog.Event(99), slog.LevelError)}, "INFO"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logger, out := newLogger(tt.enabled)
			opts := append([]advisorylockslog.Option{advisorylockslog.WithHoldThreshold(0)}, tt.opts...)
			m := advisorylock.New(pool, "levels", advisorylock.WithHooks(advisorylockslog.NewHook(logger, opts...)))
			if err := withLock(t.Context(), m); err != nil {
				t.Fatal(err)
			}
			rs := out.records(t)
			switch {
			case tt.want == "" && len(rs) != 0:
				t.Errorf("records %q; want none", out.lines())
			case tt.want != "" && (len(rs) != 1 || rs[0].str("level") != tt.want):
				t.Errorf("records %q; want one at %s", out.lines(), tt.want)
			}
		})
	}
}

func TestEvent_String(t *testing.T) {
	t.Parallel()
	tests := []struct {
		e    advisorylockslog.Event
		want string
	}{
		{advisorylockslog.EventWait, "advisorylock: long wait"},
		{advisorylockslog.EventTimeout, "advisorylock: timeout"},
		{advisorylockslog.EventHold, "advisorylock: long hold"},
		{advisorylockslog.EventLost, "advisorylock: lock lost"},
		{advisorylockslog.EventError, "advisorylock: error"},
		{advisorylockslog.Event(99), "advisorylock: unknown event"},
	}
	for _, tt := range tests {
		if got := tt.e.String(); got != tt.want {
			t.Errorf("Event(%d).String() = %q; want %q", tt.e, got, tt.want)
		}
	}
}

// With a nil logger, the Hook logs to slog.Default(), as it is when it logs.
func TestNewHook_defaultLogger(t *testing.T) {
	prev := slog.Default()
	t.Cleanup(func() { slog.SetDefault(prev) })
	hook := advisorylockslog.NewHook(nil, advisorylockslog.WithHoldThreshold(0))
	logger, out := newLogger(slog.LevelInfo)
	slog.SetDefault(logger)
	m := advisorylock.New(pgtest.NewPool(t, pgtest.Database(t)), "default", advisorylock.WithHooks(hook))
	if err := withLock(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	if r := out.one(t); r.str("msg") != "advisorylock: long hold" {
		t.Errorf("msg = %q; want the hold's", r.str("msg"))
	}
}

// A nil or zero Hook logs nothing and does not get in the way.
func TestHook_nilAndZero(t *testing.T) {
	prev := slog.Default()
	t.Cleanup(func() { slog.SetDefault(prev) })
	logger, out := newLogger(slog.LevelDebug)
	slog.SetDefault(logger)
	pool := pgtest.NewPool(t, pgtest.Database(t))
	m := advisorylock.New(pool, "zero", advisorylock.WithHooks((*advisorylockslog.Hook)(nil), &advisorylockslog.Hook{}))
	if err := withLock(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	if lines := out.lines(); len(lines) != 0 {
		t.Errorf("records %q; want none", lines)
	}
}

// A Hook whose events the logger does not enable allocates nothing, on any
// path, even when every wait and hold reaches its threshold.
func TestHook_disabledAllocatesNothing(t *testing.T) {
	logger, out := newLogger(slog.LevelError + 1)
	hook := advisorylockslog.NewHook(logger, advisorylockslog.WithWaitThreshold(0), advisorylockslog.WithHoldThreshold(0))
	m := advisorylock.New(pgtest.NewPool(t, pgtest.Database(t)), "disabled")
	l, err := m.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock(context.Background())
	ctx := t.Context()
	lockErr := errors.New("advisorylock: lock lost")
	allocs := testing.AllocsPerRun(100, func() {
		for _, o := range []advisorylock.Outcome{advisorylock.OutcomeAcquired, advisorylock.OutcomeTimeout, advisorylock.OutcomeCanceled, advisorylock.OutcomeError} {
			actx := hook.AcquireStart(ctx, m, advisorylock.AcquireStartData{})
			hook.AcquireEnd(actx, m, advisorylock.AcquireEndData{Outcome: o, Wait: time.Second, Lock: l, Err: lockErr})
		}
		hctx := hook.HoldStart(ctx, l, advisorylock.HoldStartData{})
		hook.LockLost(hctx, l, advisorylock.LostData{Held: time.Second, Err: lockErr})
		hook.HoldEnd(hctx, l, advisorylock.HoldEndData{Held: time.Second})
		hook.HoldEnd(hctx, l, advisorylock.HoldEndData{Held: time.Second, Err: lockErr})
	})
	if allocs != 0 {
		t.Errorf("%v allocations a run; want 0", allocs)
	}
	if lines := out.lines(); len(lines) != 0 {
		t.Errorf("records %q; want none", lines)
	}
}
