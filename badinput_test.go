package advisorylock_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// The bad-input tests call every public entry point with bad, hostile or
// extreme arguments, one table per entry point. Each call returns a typed
// error (or does what its documentation says), never panics, leaves no lock
// held and no connection acquired, and the test leaks no goroutine.

// badEnv is what the cases of a bad-input table work with.
type badEnv struct {
	dsn   string
	pool  *pgxpool.Pool // the subject's pool
	other *pgxpool.Pool // another process, holding locks against the subject
	// closed is a pool closed before the cases run, and closedErr what its
	// Acquire returns: pgxpool's (puddle's) closed-pool sentinel, taken from
	// the pool itself so that errors.Is can match it.
	closed    *pgxpool.Pool
	closedErr error
}

// callResult is the error one entry point returned.
type callResult struct {
	call string
	err  error
}

// badCase is one row of a bad-input table: run calls one or more entry
// points and returns their errors, each of which must match every error in
// want (with errors.Is), or be nil when want is empty. run may check more
// itself. A panic out of run fails the case.
type badCase struct {
	name string
	run  func(t *testing.T, e *badEnv) []callResult
	want []error
	// msg, for bad input, is what every error's message must say was wrong.
	msg string
	// noIO: the calls must fail before any round trip (no connection is
	// taken from e.pool).
	noIO bool
}

// runBadInput runs each case of a bad-input table as a subtest, against a
// database and pools of the test's own. Every error a case returns must have
// one "advisorylock: " prefix, and after each case no connection may be
// acquired and no advisory lock held.
//
// The tests that call it stay serial: goleak checks the whole process for
// goroutines the bad input left behind, and would see the parallel tests'.
func runBadInput(t *testing.T, cases []badCase) {
	t.Helper()
	// Registered first, so it runs last: after the pools are closed.
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leaks) })

	e := &badEnv{dsn: pgtest.Database(t)}
	e.pool, e.other = pgtest.NewPool(t, e.dsn), pgtest.NewPool(t, e.dsn)
	closed, err := pgxpool.New(context.Background(), e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	_, e.closedErr = closed.Acquire(context.Background())
	if e.closedErr == nil {
		t.Fatal("Acquire on a closed pool succeeded")
	}
	e.closed = closed

	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			// Registered first, so it runs after the case's own cleanups,
			// such as the release of a lock another session held for it.
			t.Cleanup(func() {
				for _, p := range []*pgxpool.Pool{e.pool, e.other} {
					pgtest.AssertPoolClean(t, p)
				}
				pgtest.AwaitAdvisoryLocks(t, e.dsn, "true", 0)
			})
			before := e.pool.Stat()
			var rs []callResult
			if r := recoverFrom(func() { rs = tt.run(t, e) }); r != nil {
				t.Fatalf("panicked: %v", r)
			}
			if len(rs) == 0 && !t.Failed() {
				t.Fatal("the case checked nothing")
			}
			for _, r := range rs {
				checkBadResult(t, tt, r)
			}
			after := e.pool.Stat()
			if tt.noIO {
				if n := after.AcquireCount() - before.AcquireCount(); n != 0 {
					t.Errorf("%d connections taken from the pool; want none (no round trip for bad input)", n)
				}
				if n := after.NewConnsCount() - before.NewConnsCount(); n != 0 {
					t.Errorf("%d connections opened; want none", n)
				}
			}
		})
	}
}

// checkBadResult fails t unless r is what tt wants.
func checkBadResult(t *testing.T, tt badCase, r callResult) {
	t.Helper()
	switch {
	case len(tt.want) == 0 && r.err != nil:
		t.Errorf("%s: %v; want no error", r.call, r.err)
	case len(tt.want) > 0 && r.err == nil:
		t.Errorf("%s: no error; want %v", r.call, tt.want)
	}
	if r.err == nil {
		return
	}
	for _, w := range tt.want {
		if !errors.Is(r.err, w) {
			t.Errorf("%s: %v; want an error matching %v", r.call, r.err, w)
		}
	}
	msg := r.err.Error()
	if n := strings.Count(msg, "advisorylock:"); n != 1 {
		t.Errorf("%s: %q has %d \"advisorylock:\" prefixes; want 1", r.call, msg, n)
	}
	if tt.msg != "" && !strings.Contains(msg, tt.msg) {
		t.Errorf("%s: %q; want it to say %q", r.call, msg, tt.msg)
	}
}

// noFn is a WithLock function that does nothing.
func noFn(context.Context) (int, error) { return 0, nil }

// mutexCalls runs each entry point of m once with ctx: Lock, TryLock,
// WithLock and Holders. A lock acquired where the case wants an error is
// released (its nil error then fails the case).
func mutexCalls(ctx context.Context, m *advisorylock.Mutex) []callResult {
	var rs []callResult
	for _, c := range []struct {
		call string
		lock func(context.Context) (*advisorylock.Lock, error)
	}{{"Lock", m.Lock}, {"TryLock", m.TryLock}} {
		l, err := c.lock(ctx)
		if l != nil {
			_ = l.Unlock(context.Background())
		}
		rs = append(rs, callResult{c.call, err})
	}
	_, err := advisorylock.WithLock(ctx, m, noFn)
	rs = append(rs, callResult{"WithLock", err})
	_, err = m.Holders(ctx)
	return append(rs, callResult{"Holders", err})
}

// invalidCase is a case running every entry point of the Mutex made by mk,
// each of which must fail with ErrInvalidArgument, saying msg, before any
// round trip.
func invalidCase(name string, mk func(e *badEnv) *advisorylock.Mutex, msg string) badCase {
	return badCase{name: name, want: []error{advisorylock.ErrInvalidArgument}, msg: msg, noIO: true,
		run: func(t *testing.T, e *badEnv) []callResult { return mutexCalls(t.Context(), mk(e)) }}
}

// ctxCase is a case running every entry point of a well-formed Mutex with the
// context made by ctx.
func ctxCase(name string, mk func(e *badEnv) *advisorylock.Mutex, ctx func() context.Context, want error) badCase {
	return badCase{name: name, want: []error{want}, noIO: true,
		run: func(t *testing.T, e *badEnv) []callResult { return mutexCalls(ctx(), mk(e)) }}
}

// lockUnlock takes m's lock, checks it is held in the server, and releases it.
func lockUnlock(t *testing.T, m *advisorylock.Mutex) []callResult {
	t.Helper()
	l, err := m.Lock(t.Context())
	if err != nil {
		return []callResult{{"Lock", err}}
	}
	hs, herr := m.Holders(t.Context())
	if herr == nil && (len(hs) != 1 || !hs[0].Granted) {
		t.Errorf("Holders while held = %+v; want one holder", hs)
	}
	return []callResult{{"Lock", nil}, {"Holders", herr}, {"Unlock", l.Unlock(t.Context())}}
}

func cancelledCtx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func expiredCtx() context.Context {
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	cancel() // the deadline has passed: ctx.Err() stays DeadlineExceeded
	return ctx
}

// holdFor takes name's lock from e.other for the rest of the case.
func holdFor(t *testing.T, e *badEnv, name string) *advisorylock.Lock {
	t.Helper()
	l, err := advisorylock.New(e.other, name).Lock(t.Context())
	if err != nil {
		t.Fatalf("holding %q from another session: %v", name, err)
	}
	t.Cleanup(func() { _ = l.Unlock(context.Background()) })
	return l
}

// recoverFrom runs f and returns what it panicked with, or nil.
func recoverFrom(f func()) (r any) {
	defer func() { r = recover() }()
	f()
	return nil
}

// hugeName is a 1 MiB lock name.
var hugeName = strings.Repeat("h", 1<<20)

// negative says what an option refuses a negative duration with.
func negative(option string, d time.Duration) string {
	return fmt.Sprintf("%s(%v): negative duration", option, d)
}

// Mutexes made with bad arguments: every entry point reports the same typed
// error, which says what was wrong, before any round trip.
func TestNew_badInput(t *testing.T) {
	// Serial: runBadInput checks the whole process for leaked goroutines.
	runBadInput(t, []badCase{
		invalidCase("New: empty name", func(e *badEnv) *advisorylock.Mutex { return advisorylock.New(e.pool, "") }, "empty lock name"),
		invalidCase("New: nil pool", func(e *badEnv) *advisorylock.Mutex { return advisorylock.New(nil, "x") }, "nil pool"),
		// Either may be reported.
		invalidCase("New: nil pool and empty name", func(e *badEnv) *advisorylock.Mutex { return advisorylock.New(nil, "") }, ""),
		invalidCase("NewWithKey: nil pool", func(e *badEnv) *advisorylock.Mutex {
			return advisorylock.NewWithKey(nil, advisorylock.Int64Key(1))
		}, "nil pool"),
		invalidCase("NewSet: nil names", func(e *badEnv) *advisorylock.Mutex { return advisorylock.NewSet(e.pool, nil) }, "empty lock name"),
		invalidCase("NewSet: no names", func(e *badEnv) *advisorylock.Mutex { return advisorylock.NewSet(e.pool, []string{}) }, "empty lock name"),
		invalidCase("NewSet: an empty name among others", func(e *badEnv) *advisorylock.Mutex {
			return advisorylock.NewSet(e.pool, []string{"a", "", "b"})
		}, "empty lock name"),
		invalidCase("NewSet: only empty names", func(e *badEnv) *advisorylock.Mutex { return advisorylock.NewSet(e.pool, []string{"", ""}) }, "empty lock name"),
		invalidCase("NewSet: nil pool", func(e *badEnv) *advisorylock.Mutex { return advisorylock.NewSet(nil, []string{"a", "b"}) }, "nil pool"),
		invalidCase("NewSetWithKeys: nil keys", func(e *badEnv) *advisorylock.Mutex { return advisorylock.NewSetWithKeys(e.pool, nil) }, "empty lock name"),
		invalidCase("NewSetWithKeys: no keys", func(e *badEnv) *advisorylock.Mutex {
			return advisorylock.NewSetWithKeys(e.pool, []advisorylock.Key{})
		}, "empty lock name"),
		invalidCase("NewSetWithKeys: nil pool", func(e *badEnv) *advisorylock.Mutex {
			return advisorylock.NewSetWithKeys(nil, []advisorylock.Key{advisorylock.Int64Key(1)})
		}, "nil pool"),
		// A set is locked by one statement with a result column per key, and
		// PostgreSQL allows 1664: larger sets are refused before any I/O.
		{name: "NewSet: more than MaxSetKeys names", want: []error{advisorylock.ErrInvalidArgument}, noIO: true,
			msg: fmt.Sprintf("a set of %d keys; at most %d", advisorylock.MaxSetKeys+1, advisorylock.MaxSetKeys),
			run: func(t *testing.T, e *badEnv) []callResult {
				names := make([]string, advisorylock.MaxSetKeys+1)
				for i := range names {
					names[i] = "n" + strconv.Itoa(i)
				}
				return mutexCalls(t.Context(), advisorylock.NewSet(e.pool, names))
			}},
		invalidCase("nil *Mutex", func(e *badEnv) *advisorylock.Mutex { return nil }, "nil Mutex"),
		invalidCase("WithTimeout(-1ns)", func(e *badEnv) *advisorylock.Mutex {
			return advisorylock.New(e.pool, "x", advisorylock.WithTimeout(-1))
		}, negative("WithTimeout", -1)),
		invalidCase("WithTimeout(math.MinInt64)", func(e *badEnv) *advisorylock.Mutex {
			return advisorylock.New(e.pool, "x", advisorylock.WithTimeout(math.MinInt64))
		}, negative("WithTimeout", math.MinInt64)),
		invalidCase("WithKeepalive(-1ns)", func(e *badEnv) *advisorylock.Mutex {
			return advisorylock.New(e.pool, "x", advisorylock.WithKeepalive(-1))
		}, negative("WithKeepalive", -1)),
		invalidCase("WithKeepalive(math.MinInt64)", func(e *badEnv) *advisorylock.Mutex {
			return advisorylock.New(e.pool, "x", advisorylock.WithKeepalive(math.MinInt64))
		}, negative("WithKeepalive", math.MinInt64)),
		invalidCase("a bad option is not undone by a later good one", func(e *badEnv) *advisorylock.Mutex {
			return advisorylock.New(e.pool, "x", advisorylock.WithTimeout(-time.Second), advisorylock.WithTimeout(time.Second))
		}, negative("WithTimeout", -time.Second)),
		invalidCase("a bad option and an empty name: the option is reported", func(e *badEnv) *advisorylock.Mutex {
			return advisorylock.New(e.pool, "", advisorylock.WithKeepalive(-time.Second))
		}, negative("WithKeepalive", -time.Second)),
		invalidCase("a bad option on a set", func(e *badEnv) *advisorylock.Mutex {
			return advisorylock.NewSet(e.pool, []string{"a", "b"}, advisorylock.TransactionScope(), advisorylock.WithTimeout(-1))
		}, negative("WithTimeout", -1)),
		invalidCase("a bad option with hooks calls no hook", func(e *badEnv) *advisorylock.Mutex {
			return advisorylock.New(e.pool, "x", advisorylock.WithHooks(panickyHook{}), advisorylock.WithTimeout(-1))
		}, negative("WithTimeout", -1)),
	})
}

// maxLockTimeout is the longest bound the server enforces (lock_timeout, an
// int4 of milliseconds); longer ones are enforced by the client alone.
const maxLockTimeout = math.MaxInt32 * time.Millisecond

// Options at the edges of their range, which are valid.
func TestOptions_badInput(t *testing.T) {
	// Serial: runBadInput checks the whole process for leaked goroutines.
	runBadInput(t, []badCase{
		{name: "nil Option and nil hooks are ignored",
			run: func(t *testing.T, e *badEnv) []callResult {
				return lockUnlock(t, advisorylock.New(e.pool, "x", nil, advisorylock.WithHooks(nil, advisorylock.MultiHook(nil)), nil))
			}},
		{name: "WithTimeout(0): no bound",
			run: func(t *testing.T, e *badEnv) []callResult {
				m := advisorylock.New(e.pool, "x", advisorylock.WithTimeout(0))
				if m.Timeout() != 0 {
					t.Errorf("Timeout() = %v; want 0", m.Timeout())
				}
				return lockUnlock(t, m)
			}},
		{name: "WithKeepalive(0): no probe",
			run: func(t *testing.T, e *badEnv) []callResult {
				m := advisorylock.New(e.pool, "x", advisorylock.WithKeepalive(0))
				l, err := m.Lock(t.Context())
				if err != nil {
					return []callResult{{"Lock", err}}
				}
				time.Sleep(50 * time.Millisecond) // a window in which nothing may happen
				if err := l.Err(); err != nil {
					t.Errorf("Err() while held = %v; want nil", err)
				}
				return []callResult{{"Unlock", l.Unlock(t.Context())}}
			}},
		{name: "WithTimeout(1ns) on a free lock: acquired or timed out",
			run: func(t *testing.T, e *badEnv) []callResult {
				l, err := advisorylock.New(e.pool, "x", advisorylock.WithTimeout(1)).Lock(t.Context())
				if err != nil {
					if !errors.Is(err, context.DeadlineExceeded) {
						return []callResult{{"Lock", err}}
					}
					return []callResult{{"Lock (timed out)", nil}}
				}
				return []callResult{{"Unlock", l.Unlock(t.Context())}}
			}},
		{name: "WithTimeout(1ns) on a busy lock", want: []error{context.DeadlineExceeded},
			run: func(t *testing.T, e *badEnv) []callResult {
				holdFor(t, e, "busy")
				start := time.Now()
				_, err := advisorylock.New(e.pool, "busy", advisorylock.WithTimeout(1)).Lock(t.Context())
				if d := time.Since(start); d > 5*time.Second {
					t.Errorf("Lock took %v; want it to give up at once", d)
				}
				return []callResult{{"Lock", err}}
			}},
		{name: "WithTimeout beyond lock_timeout's range is enforced by the client", want: []error{context.Canceled},
			run: func(t *testing.T, e *badEnv) []callResult {
				holdFor(t, e, "busy")
				ctx, cancel := context.WithCancel(t.Context())
				defer time.AfterFunc(200*time.Millisecond, cancel).Stop()
				_, err := advisorylock.New(e.pool, "busy", advisorylock.WithTimeout(maxLockTimeout+time.Millisecond)).Lock(ctx)
				if errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Lock = %v; the bound of %v ran out early", err, maxLockTimeout+time.Millisecond)
				}
				return []callResult{{"Lock", err}}
			}},
		// A bound near math.MaxInt64, a natural way to say "no limit", must not
		// overflow when the client adds its grace to it: the wait goes on.
		{name: "WithTimeout(math.MaxInt64) on a busy lock waits", want: []error{context.Canceled},
			run: func(t *testing.T, e *badEnv) []callResult {
				holdFor(t, e, "busy")
				ctx, cancel := context.WithCancel(t.Context())
				defer time.AfterFunc(300*time.Millisecond, cancel).Stop()
				_, err := advisorylock.New(e.pool, "busy", advisorylock.WithTimeout(math.MaxInt64)).Lock(ctx)
				if errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Lock = %v; the bound of ~292 years ran out early", err)
				}
				return []callResult{{"Lock", err}}
			}},
		// The same, through a context deadline ~292 years away.
		{name: "a context deadline centuries away on a busy lock waits", want: []error{context.Canceled},
			run: func(t *testing.T, e *badEnv) []callResult {
				holdFor(t, e, "busy")
				ctx, cancel := context.WithDeadline(t.Context(), time.Now().Add(math.MaxInt64))
				defer cancel()
				defer time.AfterFunc(300*time.Millisecond, cancel).Stop()
				_, err := advisorylock.New(e.pool, "busy").Lock(ctx)
				if errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Lock = %v; the deadline centuries away ran out early", err)
				}
				return []callResult{{"Lock", err}}
			}},
	})
}

// Contexts that are already done, or end during the wait: typed errors, and
// before any round trip for those already done.
func TestContext_badInput(t *testing.T) {
	// Serial: runBadInput checks the whole process for leaked goroutines.
	single := func(e *badEnv) *advisorylock.Mutex { return advisorylock.New(e.pool, "x") }
	runBadInput(t, []badCase{
		ctxCase("cancelled context", single, cancelledCtx, context.Canceled),
		ctxCase("cancelled context, transaction scope", func(e *badEnv) *advisorylock.Mutex {
			return advisorylock.New(e.pool, "x", advisorylock.TransactionScope())
		}, cancelledCtx, context.Canceled),
		ctxCase("cancelled context, shared", func(e *badEnv) *advisorylock.Mutex {
			return advisorylock.New(e.pool, "x", advisorylock.Shared())
		}, cancelledCtx, context.Canceled),
		ctxCase("cancelled context, set", func(e *badEnv) *advisorylock.Mutex {
			return advisorylock.NewSet(e.pool, []string{"a", "b"})
		}, cancelledCtx, context.Canceled),
		ctxCase("cancelled context, by key", func(e *badEnv) *advisorylock.Mutex {
			return advisorylock.NewWithKey(e.pool, advisorylock.Int64Key(1))
		}, cancelledCtx, context.Canceled),
		ctxCase("cancelled context with a cause", single, func() context.Context {
			ctx, cancel := context.WithCancelCause(context.Background())
			cancel(errors.New("shutting down"))
			return ctx
		}, context.Canceled),
		ctxCase("deadline passed", single, expiredCtx, context.DeadlineExceeded),
		ctxCase("deadline passed, transaction scope", func(e *badEnv) *advisorylock.Mutex {
			return advisorylock.New(e.pool, "x", advisorylock.TransactionScope())
		}, expiredCtx, context.DeadlineExceeded),
		ctxCase("deadline passed, with a timeout too", func(e *badEnv) *advisorylock.Mutex {
			return advisorylock.New(e.pool, "x", advisorylock.WithTimeout(time.Hour))
		}, expiredCtx, context.DeadlineExceeded),
		ctxCase("cancelled context, 1 MiB name", func(e *badEnv) *advisorylock.Mutex {
			return advisorylock.New(e.pool, hugeName)
		}, cancelledCtx, context.Canceled),
		{name: "context cancelled while waiting", want: []error{context.Canceled},
			run: func(t *testing.T, e *badEnv) []callResult {
				holdFor(t, e, "busy")
				var rs []callResult
				for _, opt := range []advisorylock.Option{nil, advisorylock.TransactionScope()} {
					ctx, cancel := context.WithCancel(t.Context())
					stop := time.AfterFunc(50*time.Millisecond, cancel)
					_, err := advisorylock.New(e.pool, "busy", opt).Lock(ctx)
					stop.Stop()
					cancel()
					rs = append(rs, callResult{"Lock", err})
				}
				return rs
			}},
	})
}

// panickyHook panics in every method: a Mutex with bad input must not call it.
type panickyHook struct{}

func (panickyHook) AcquireStart(context.Context, *advisorylock.Mutex, advisorylock.AcquireStartData) context.Context {
	panic("AcquireStart called")
}

func (panickyHook) AcquireEnd(context.Context, *advisorylock.Mutex, advisorylock.AcquireEndData) {
	panic("AcquireEnd called")
}
