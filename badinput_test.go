package advisorylock_test

import (
	"context"
	"errors"
	"math"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// badEnv is what the cases of TestBadInput work with.
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

// badCase is one row of TestBadInput: run calls one or more entry points and
// returns their errors, each of which must match every error in want (with
// errors.Is), or be nil when want is empty. run may check more itself. A
// panic out of run fails the case.
type badCase struct {
	name string
	run  func(t *testing.T, e *badEnv) []callResult
	want []error
	// noIO: the calls must fail before any round trip (no connection is
	// taken from e.pool).
	noIO bool
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

// mutexCase is a case running every entry point of the Mutex made by mk.
func mutexCase(name string, mk func(e *badEnv) *advisorylock.Mutex, want error) badCase {
	return badCase{name: name, want: []error{want}, noIO: errors.Is(want, advisorylock.ErrInvalidArgument),
		run: func(t *testing.T, e *badEnv) []callResult { return mutexCalls(t.Context(), mk(e)) }}
}

// ctxCase is a case running every entry point of a well-formed Mutex with the
// context made by ctx.
func ctxCase(name string, mk func(e *badEnv) *advisorylock.Mutex, ctx func() context.Context, want error) badCase {
	return badCase{name: name, want: []error{want}, noIO: true,
		run: func(t *testing.T, e *badEnv) []callResult { return mutexCalls(ctx(), mk(e)) }}
}

// lockUnlock takes m's lock, checks it is held in the server, and releases it.
func lockUnlock(t *testing.T, e *badEnv, m *advisorylock.Mutex) []callResult {
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

// maxLockTimeout is the longest bound the server enforces (lock_timeout, an
// int4 of milliseconds); longer ones are enforced by the client alone.
const maxLockTimeout = math.MaxInt32 * time.Millisecond

// TestBadInput calls every public entry point with bad, hostile or extreme
// arguments. Each call returns a typed error (or does what its documentation
// says), never panics, leaves no lock held and no connection acquired, and
// the test leaks no goroutine.
func TestBadInput(t *testing.T) {
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

	cases := badInputCases()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			// Registered first, so it runs after the case's own cleanups,
			// such as the release of a lock another session held for it.
			t.Cleanup(func() {
				for _, p := range []*pgxpool.Pool{e.pool, e.other} {
					awaitNoneAcquired(t, p)
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
				switch {
				case len(tt.want) == 0 && r.err != nil:
					t.Errorf("%s: %v; want no error", r.call, r.err)
				case len(tt.want) > 0 && r.err == nil:
					t.Errorf("%s: no error; want %v", r.call, tt.want)
				}
				for _, w := range tt.want {
					if r.err != nil && !errors.Is(r.err, w) {
						t.Errorf("%s: %v; want an error matching %v", r.call, r.err, w)
					}
				}
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
	t.Logf("%d cases", len(cases))
}

// awaitNoneAcquired waits until no connection of pool is acquired, or fails t
// after 10s: pgxpool destroys a released broken connection in the
// background, and counts it acquired until then.
func awaitNoneAcquired(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for pool.Stat().AcquiredConns() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

func badInputCases() []badCase {
	const mib = 1 << 20
	hugeName := strings.Repeat("h", mib)
	var cases []badCase

	// Mutexes made with bad arguments: every entry point reports the same
	// typed error, before any round trip.
	cases = append(cases,
		mutexCase("New: empty name", func(e *badEnv) *advisorylock.Mutex { return advisorylock.New(e.pool, "") }, advisorylock.ErrInvalidArgument),
		mutexCase("New: nil pool", func(e *badEnv) *advisorylock.Mutex { return advisorylock.New(nil, "x") }, advisorylock.ErrInvalidArgument),
		mutexCase("New: nil pool and empty name", func(e *badEnv) *advisorylock.Mutex { return advisorylock.New(nil, "") }, advisorylock.ErrInvalidArgument),
		mutexCase("NewWithKey: nil pool", func(e *badEnv) *advisorylock.Mutex {
			return advisorylock.NewWithKey(nil, advisorylock.Int64Key(1))
		}, advisorylock.ErrInvalidArgument),
		mutexCase("NewSet: nil names", func(e *badEnv) *advisorylock.Mutex { return advisorylock.NewSet(e.pool, nil) }, advisorylock.ErrInvalidArgument),
		mutexCase("NewSet: no names", func(e *badEnv) *advisorylock.Mutex { return advisorylock.NewSet(e.pool, []string{}) }, advisorylock.ErrInvalidArgument),
		mutexCase("NewSet: an empty name among others", func(e *badEnv) *advisorylock.Mutex {
			return advisorylock.NewSet(e.pool, []string{"a", "", "b"})
		}, advisorylock.ErrInvalidArgument),
		mutexCase("NewSet: only empty names", func(e *badEnv) *advisorylock.Mutex { return advisorylock.NewSet(e.pool, []string{"", ""}) }, advisorylock.ErrInvalidArgument),
		mutexCase("NewSet: nil pool", func(e *badEnv) *advisorylock.Mutex { return advisorylock.NewSet(nil, []string{"a", "b"}) }, advisorylock.ErrInvalidArgument),
		mutexCase("NewSetWithKeys: nil keys", func(e *badEnv) *advisorylock.Mutex { return advisorylock.NewSetWithKeys(e.pool, nil) }, advisorylock.ErrInvalidArgument),
		mutexCase("NewSetWithKeys: no keys", func(e *badEnv) *advisorylock.Mutex {
			return advisorylock.NewSetWithKeys(e.pool, []advisorylock.Key{})
		}, advisorylock.ErrInvalidArgument),
		mutexCase("NewSetWithKeys: nil pool", func(e *badEnv) *advisorylock.Mutex {
			return advisorylock.NewSetWithKeys(nil, []advisorylock.Key{advisorylock.Int64Key(1)})
		}, advisorylock.ErrInvalidArgument),
		mutexCase("nil *Mutex", func(e *badEnv) *advisorylock.Mutex { return nil }, advisorylock.ErrInvalidArgument),
		mutexCase("WithTimeout(-1ns)", func(e *badEnv) *advisorylock.Mutex {
			return advisorylock.New(e.pool, "x", advisorylock.WithTimeout(-1))
		}, advisorylock.ErrInvalidArgument),
		mutexCase("WithTimeout(math.MinInt64)", func(e *badEnv) *advisorylock.Mutex {
			return advisorylock.New(e.pool, "x", advisorylock.WithTimeout(math.MinInt64))
		}, advisorylock.ErrInvalidArgument),
		mutexCase("WithKeepalive(-1ns)", func(e *badEnv) *advisorylock.Mutex {
			return advisorylock.New(e.pool, "x", advisorylock.WithKeepalive(-1))
		}, advisorylock.ErrInvalidArgument),
		mutexCase("WithKeepalive(math.MinInt64)", func(e *badEnv) *advisorylock.Mutex {
			return advisorylock.New(e.pool, "x", advisorylock.WithKeepalive(math.MinInt64))
		}, advisorylock.ErrInvalidArgument),
		mutexCase("a bad option is not undone by a later good one", func(e *badEnv) *advisorylock.Mutex {
			return advisorylock.New(e.pool, "x", advisorylock.WithTimeout(-time.Second), advisorylock.WithTimeout(time.Second))
		}, advisorylock.ErrInvalidArgument),
		mutexCase("a bad option and an empty name: the option is reported", func(e *badEnv) *advisorylock.Mutex {
			return advisorylock.New(e.pool, "", advisorylock.WithKeepalive(-time.Second))
		}, advisorylock.ErrInvalidArgument),
		mutexCase("a bad option on a set", func(e *badEnv) *advisorylock.Mutex {
			return advisorylock.NewSet(e.pool, []string{"a", "b"}, advisorylock.TransactionScope(), advisorylock.WithTimeout(-1))
		}, advisorylock.ErrInvalidArgument),
		mutexCase("a bad option with hooks calls no hook", func(e *badEnv) *advisorylock.Mutex {
			return advisorylock.New(e.pool, "x", advisorylock.WithHooks(panickyHook{}), advisorylock.WithTimeout(-1))
		}, advisorylock.ErrInvalidArgument),
	)

	// WithLock's own arguments.
	cases = append(cases,
		badCase{name: "WithLock: nil fn", want: []error{advisorylock.ErrInvalidArgument}, noIO: true,
			run: func(t *testing.T, e *badEnv) []callResult {
				v, err := advisorylock.WithLock[int](t.Context(), advisorylock.New(e.pool, "x"), nil)
				if v != 0 {
					t.Errorf("WithLock = %d; want the zero value", v)
				}
				return []callResult{{"WithLock", err}}
			}},
		badCase{name: "WithLock: nil fn on a nil Mutex", want: []error{advisorylock.ErrInvalidArgument}, noIO: true,
			run: func(t *testing.T, e *badEnv) []callResult {
				_, err := advisorylock.WithLock[string](t.Context(), nil, nil)
				return []callResult{{"WithLock", err}}
			}},
		badCase{name: "WithLock: nil fn on a bad Mutex", want: []error{advisorylock.ErrInvalidArgument}, noIO: true,
			run: func(t *testing.T, e *badEnv) []callResult {
				_, err := advisorylock.WithLock[int](t.Context(), advisorylock.New(nil, ""), nil)
				return []callResult{{"WithLock", err}}
			}},
	)

	// Options at the edges of their range, which are valid.
	cases = append(cases,
		badCase{name: "nil Option and nil hooks are ignored",
			run: func(t *testing.T, e *badEnv) []callResult {
				return lockUnlock(t, e, advisorylock.New(e.pool, "x", nil, advisorylock.WithHooks(nil, advisorylock.MultiHook(nil)), nil))
			}},
		badCase{name: "WithTimeout(0): no bound",
			run: func(t *testing.T, e *badEnv) []callResult {
				m := advisorylock.New(e.pool, "x", advisorylock.WithTimeout(0))
				if m.Timeout() != 0 {
					t.Errorf("Timeout() = %v; want 0", m.Timeout())
				}
				return lockUnlock(t, e, m)
			}},
		badCase{name: "WithKeepalive(0): no probe",
			run: func(t *testing.T, e *badEnv) []callResult {
				m := advisorylock.New(e.pool, "x", advisorylock.WithKeepalive(0))
				l, err := m.Lock(t.Context())
				if err != nil {
					return []callResult{{"Lock", err}}
				}
				time.Sleep(50 * time.Millisecond) // past the watcher's start
				if err := l.Err(); err != nil {
					t.Errorf("Err() while held = %v; want nil", err)
				}
				return []callResult{{"Unlock", l.Unlock(t.Context())}}
			}},
		badCase{name: "WithTimeout(1ns) on a free lock: acquired or timed out",
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
		badCase{name: "WithTimeout(1ns) on a busy lock", want: []error{context.DeadlineExceeded},
			run: func(t *testing.T, e *badEnv) []callResult {
				holdFor(t, e, "busy")
				start := time.Now()
				_, err := advisorylock.New(e.pool, "busy", advisorylock.WithTimeout(1)).Lock(t.Context())
				if d := time.Since(start); d > 5*time.Second {
					t.Errorf("Lock took %v; want it to give up at once", d)
				}
				return []callResult{{"Lock", err}}
			}},
		badCase{name: "WithTimeout beyond lock_timeout's range is enforced by the client", want: []error{context.Canceled},
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
		badCase{name: "WithTimeout(math.MaxInt64) on a busy lock waits", want: []error{context.Canceled},
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
		badCase{name: "a context deadline centuries away on a busy lock waits", want: []error{context.Canceled},
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
	)

	// Contexts that are already done: typed errors, before any round trip.
	single := func(e *badEnv) *advisorylock.Mutex { return advisorylock.New(e.pool, "x") }
	cases = append(cases,
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
		badCase{name: "context cancelled while waiting", want: []error{context.Canceled},
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
	)

	// Names: any bytes but none at all. A name is hashed in the client and
	// never sent to the server, so NUL bytes and invalid UTF-8 are ordinary
	// name bytes (KeyFromName: the SHA-256 of the name's bytes).
	for _, n := range []struct{ label, name string }{
		{"1 MiB name", hugeName},
		{"NUL inside a name", "a\x00b"},
		{"a name that is one NUL", "\x00"},
		{"invalid UTF-8 name", "\xff\xfe\xfd"},
		{"a name of control characters and quotes", "'\";\n\r\t\\--"},
	} {
		cases = append(cases, badCase{name: n.label,
			run: func(t *testing.T, e *badEnv) []callResult {
				m := advisorylock.New(e.pool, n.name)
				if m.Name() != n.name {
					t.Error("Name() differs from the name given")
				}
				if m.Key() != npmKey(n.name) || m.Key() != advisorylock.KeyFromName(n.name) {
					t.Errorf("Key() = %v; want %v, the SHA-256 mapping of the bytes", m.Key(), npmKey(n.name))
				}
				if want := strconv.Quote(n.name); m.String() != want {
					t.Errorf("String() is not the quoted name")
				}
				return lockUnlock(t, e, m)
			}})
	}
	cases = append(cases,
		badCase{name: "a NUL does not end a name",
			run: func(t *testing.T, e *badEnv) []callResult {
				holdFor(t, e, "a\x00b")
				var rs []callResult
				for _, name := range []string{"a", "a\x00", "a\x00c"} {
					l, err := advisorylock.New(e.pool, name).TryLock(t.Context())
					rs = append(rs, callResult{"TryLock " + strconv.Quote(name), err})
					if err == nil {
						rs = append(rs, callResult{"Unlock", l.Unlock(t.Context())})
					}
				}
				_, err := advisorylock.New(e.pool, "a\x00b").TryLock(t.Context())
				if !errors.Is(err, advisorylock.ErrLocked) {
					t.Errorf("TryLock of the held name = %v; want ErrLocked", err)
				}
				return rs
			}},
	)

	// Key sets with duplicate, overlapping or extreme entries.
	cases = append(cases,
		badCase{name: "NewSet: duplicate names count once",
			run: func(t *testing.T, e *badEnv) []callResult {
				m := advisorylock.NewSet(e.pool, []string{"a", "b", "a", "b", "a"})
				if n := len(m.Keys()); n != 2 {
					t.Errorf("%d keys; want 2", n)
				}
				l, err := m.TryLock(t.Context())
				if err != nil {
					return []callResult{{"TryLock", err}}
				}
				if n := len(pgtest.AdvisoryLockPIDs(t, e.pool, "granted")); n != 2 {
					t.Errorf("%d advisory locks granted; want 2", n)
				}
				return []callResult{{"TryLock", nil}, {"Unlock", l.Unlock(t.Context())}}
			}},
		badCase{name: "NewSetWithKeys: duplicate keys count once",
			run: func(t *testing.T, e *badEnv) []callResult {
				k := advisorylock.PairKey(1, 2)
				m := advisorylock.NewSetWithKeys(e.pool, []advisorylock.Key{k, k, k})
				if ks := m.Keys(); len(ks) != 1 || ks[0] != k || m.Key() != k {
					t.Errorf("Keys() = %v; want [%v]", ks, k)
				}
				return lockUnlock(t, e, m)
			}},
		badCase{name: "NewSetWithKeys: bigint 0 and pair (0,0) are two keys",
			run: func(t *testing.T, e *badEnv) []callResult {
				m := advisorylock.NewSetWithKeys(e.pool, []advisorylock.Key{advisorylock.PairKey(0, 0), {}, advisorylock.Int64Key(0)})
				if n := len(m.Keys()); n != 2 {
					t.Errorf("%d keys; want 2", n)
				}
				l, err := m.Lock(t.Context())
				if err != nil {
					return []callResult{{"Lock", err}}
				}
				if n := len(pgtest.AdvisoryLockPIDs(t, e.pool, "granted")); n != 2 {
					t.Errorf("%d advisory locks granted; want 2", n)
				}
				return []callResult{{"Unlock", l.Unlock(t.Context())}}
			}},
		badCase{name: "NewSet: one name is the same lock as New's",
			run: func(t *testing.T, e *badEnv) []callResult {
				m := advisorylock.NewSet(e.pool, []string{"solo"})
				if m.Key() != advisorylock.KeyFromName("solo") {
					t.Errorf("Key() = %v; want KeyFromName(\"solo\")", m.Key())
				}
				holdFor(t, e, "solo")
				_, err := m.TryLock(t.Context())
				if !errors.Is(err, advisorylock.ErrLocked) {
					t.Errorf("TryLock = %v; want ErrLocked", err)
				}
				return []callResult{{"Key", nil}}
			}},
		badCase{name: "a set overlapping a held one gets none of its keys", want: []error{advisorylock.ErrLocked},
			run: func(t *testing.T, e *badEnv) []callResult {
				held, err := advisorylock.NewSet(e.other, []string{"b", "c"}).Lock(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				defer held.Unlock(context.Background())
				m := advisorylock.NewSet(e.pool, []string{"a", "b"}, advisorylock.WithTimeout(50*time.Millisecond))
				_, tryErr := m.TryLock(t.Context())
				_, lockErr := m.Lock(t.Context())
				if !errors.Is(lockErr, context.DeadlineExceeded) {
					t.Errorf("Lock = %v; want a timeout", lockErr)
				}
				if n := len(pgtest.AdvisoryLockPIDs(t, e.pool, "granted")); n != 2 {
					t.Errorf("%d advisory locks granted; want the other set's 2", n)
				}
				return []callResult{{"TryLock", tryErr}}
			}},
		// A set is locked by one statement with a result column per key, and
		// PostgreSQL allows 1664: larger sets are refused before any I/O.
		badCase{name: "NewSet: more than MaxSetKeys names", want: []error{advisorylock.ErrInvalidArgument}, noIO: true,
			run: func(t *testing.T, e *badEnv) []callResult {
				names := make([]string, advisorylock.MaxSetKeys+1)
				for i := range names {
					names[i] = "n" + strconv.Itoa(i)
				}
				return mutexCalls(t.Context(), advisorylock.NewSet(e.pool, names))
			}},
		badCase{name: "NewSet: MaxSetKeys names lock and unlock",
			run: func(t *testing.T, e *badEnv) []callResult {
				names := make([]string, advisorylock.MaxSetKeys)
				for i := range names {
					names[i] = "n" + strconv.Itoa(i)
				}
				var rs []callResult
				for _, scope := range []advisorylock.Option{nil, advisorylock.TransactionScope()} {
					m := advisorylock.NewSet(e.pool, names, scope, advisorylock.WithTimeout(time.Minute))
					l, err := m.Lock(t.Context())
					if err != nil {
						return append(rs, callResult{"Lock", err})
					}
					rs = append(rs, callResult{"Unlock", l.Unlock(t.Context())})
					l, err = m.TryLock(t.Context())
					if err != nil {
						return append(rs, callResult{"TryLock", err})
					}
					rs = append(rs, callResult{"Unlock", l.Unlock(t.Context())})
				}
				return rs
			}},
	)

	// A Lock misused: released twice, concurrently, from elsewhere, or nil.
	for _, scope := range []advisorylock.Option{nil, advisorylock.TransactionScope()} {
		label := "session"
		if scope != nil {
			label = "transaction"
		}
		cases = append(cases,
			badCase{name: "Unlock twice, " + label, want: []error{advisorylock.ErrNotHeld},
				run: func(t *testing.T, e *badEnv) []callResult {
					l, err := advisorylock.New(e.pool, "x", scope).Lock(t.Context())
					if err != nil {
						t.Fatal(err)
					}
					if err := l.Unlock(t.Context()); err != nil {
						t.Fatal(err)
					}
					return []callResult{{"Unlock", l.Unlock(t.Context())}, {"Rollback", l.Rollback(t.Context())}, {"Err", l.Err()}}
				}},
			badCase{name: "Rollback then Unlock, " + label, want: []error{advisorylock.ErrNotHeld},
				run: func(t *testing.T, e *badEnv) []callResult {
					l, err := advisorylock.New(e.pool, "x", scope).Lock(t.Context())
					if err != nil {
						t.Fatal(err)
					}
					if err := l.Rollback(t.Context()); err != nil {
						t.Fatal(err)
					}
					return []callResult{{"Unlock", l.Unlock(t.Context())}}
				}},
			badCase{name: "Unlock and Rollback racing from 8 goroutines, " + label,
				run: func(t *testing.T, e *badEnv) []callResult {
					l, err := advisorylock.New(e.pool, "x", scope).Lock(t.Context())
					if err != nil {
						t.Fatal(err)
					}
					const n = 8
					errs := make([]error, n)
					var wg sync.WaitGroup
					for i := range n {
						wg.Go(func() {
							if i%2 == 0 {
								errs[i] = l.Unlock(context.Background())
							} else {
								errs[i] = l.Rollback(context.Background())
							}
						})
					}
					wg.Wait()
					ok := 0
					for _, err := range errs {
						switch {
						case err == nil:
							ok++
						case !errors.Is(err, advisorylock.ErrNotHeld):
							t.Errorf("release: %v; want nil or ErrNotHeld", err)
						}
					}
					if ok != 1 {
						t.Errorf("%d releases succeeded; want 1", ok)
					}
					return []callResult{{"releases", nil}}
				}},
			badCase{name: "Unlock from another goroutine, " + label,
				run: func(t *testing.T, e *badEnv) []callResult {
					l, err := advisorylock.New(e.pool, "x", scope).Lock(t.Context())
					if err != nil {
						t.Fatal(err)
					}
					errc := make(chan error)
					go func() { errc <- l.Unlock(context.Background()) }()
					return []callResult{{"Unlock", <-errc}}
				}},
		)
	}
	cases = append(cases,
		badCase{name: "Unlock and Rollback on a nil *Lock", want: []error{advisorylock.ErrNotHeld}, noIO: true,
			run: func(t *testing.T, e *badEnv) []callResult {
				var l *advisorylock.Lock
				return []callResult{{"Unlock", l.Unlock(t.Context())}, {"Rollback", l.Rollback(t.Context())}}
			}},
		badCase{name: "Unlock with a cancelled context, session", want: []error{context.Canceled},
			run: func(t *testing.T, e *badEnv) []callResult {
				l, err := advisorylock.New(e.pool, "x").Lock(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				err = l.Unlock(cancelledCtx())
				if errors.Is(err, advisorylock.ErrLockLost) {
					t.Errorf("Unlock = %v; the lock was not lost", err)
				}
				if !errors.Is(l.Err(), advisorylock.ErrNotHeld) {
					t.Errorf("Err() after Unlock = %v; want ErrNotHeld", l.Err())
				}
				return []callResult{{"Unlock", err}}
			}},
		// Releasing a transaction-scoped lock with a done context ends its
		// session (pgx closes a connection whose COMMIT was interrupted); that
		// is the context's doing, not a lost lock.
		badCase{name: "Unlock with a cancelled context, transaction scope", want: []error{context.Canceled},
			run: func(t *testing.T, e *badEnv) []callResult {
				rec := newHookRecorder("r")
				l, err := advisorylock.New(e.pool, "x", advisorylock.TransactionScope(), advisorylock.WithHooks(rec)).Lock(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				err = l.Unlock(cancelledCtx())
				if errors.Is(err, advisorylock.ErrLockLost) {
					t.Errorf("Unlock = %v; the lock was not lost", err)
				}
				if n := len(rec.log.only("LockLost")); n != 0 {
					t.Errorf("LockLost reported %d times; want 0", n)
				}
				return []callResult{{"Unlock", err}}
			}},
		badCase{name: "the lock's transaction after Unlock", want: []error{advisorylock.ErrNotHeld},
			run: func(t *testing.T, e *badEnv) []callResult {
				l, err := advisorylock.New(e.pool, "x", advisorylock.TransactionScope()).Lock(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				tx := l.Tx()
				if err := l.Unlock(t.Context()); err != nil {
					t.Fatal(err)
				}
				_, execErr := tx.Exec(t.Context(), "select 1")
				_, queryErr := tx.Query(t.Context(), "select 1")
				var one int
				rowErr := tx.QueryRow(t.Context(), "select 1").Scan(&one)
				_, beginErr := tx.Begin(t.Context())
				return []callResult{{"Exec", execErr}, {"Query", queryErr}, {"QueryRow", rowErr}, {"Begin", beginErr}}
			}},
		badCase{name: "ending the lock's own transaction", want: []error{advisorylock.ErrTxManaged},
			run: func(t *testing.T, e *badEnv) []callResult {
				l, err := advisorylock.New(e.pool, "x", advisorylock.TransactionScope()).Lock(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				defer func() {
					if err := l.Unlock(t.Context()); err != nil {
						t.Errorf("Unlock after the refused Commit: %v", err)
					}
				}()
				rs := []callResult{{"Commit", l.Tx().Commit(t.Context())}, {"Rollback", l.Tx().Rollback(t.Context())}}
				if _, err := l.Tx().Exec(t.Context(), "commit"); err != nil {
					t.Logf("Exec(commit): %v", err)
				}
				return rs
			}},
		badCase{name: "a session lock has no transaction",
			run: func(t *testing.T, e *badEnv) []callResult {
				l, err := advisorylock.New(e.pool, "x").Lock(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				if l.Tx() != nil {
					t.Error("Tx() of a session lock is not nil")
				}
				return []callResult{{"Unlock", l.Unlock(t.Context())}}
			}},
		badCase{name: "locking a held Mutex again from the same goroutine",
			run: func(t *testing.T, e *badEnv) []callResult {
				m := advisorylock.New(e.pool, "x")
				l, err := m.Lock(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				defer l.Unlock(context.Background())
				_, tryErr := m.TryLock(t.Context())
				ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
				defer cancel()
				_, lockErr := m.Lock(ctx)
				if !errors.Is(tryErr, advisorylock.ErrLocked) || !errors.Is(lockErr, context.DeadlineExceeded) {
					t.Errorf("TryLock = %v, Lock = %v; want ErrLocked and a timeout: locks do not nest", tryErr, lockErr)
				}
				return []callResult{{"again", nil}}
			}},
		badCase{name: "TryLock on an exhausted pool waits for a connection, bounded by ctx", want: []error{context.DeadlineExceeded},
			run: func(t *testing.T, e *badEnv) []callResult {
				one := pgtest.NewPool(t, e.dsn, func(c *pgxpool.Config) { c.MaxConns = 1 })
				l, err := advisorylock.New(one, "a").Lock(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				defer l.Unlock(context.Background())
				ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
				defer cancel()
				_, err = advisorylock.New(one, "b").TryLock(ctx)
				return []callResult{{"TryLock", err}}
			}},
	)

	// WithLock with a hostile function.
	for _, scope := range []advisorylock.Option{nil, advisorylock.TransactionScope()} {
		label := "session"
		if scope != nil {
			label = "transaction"
		}
		cases = append(cases,
			badCase{name: "WithLock: fn panics, " + label,
				run: func(t *testing.T, e *badEnv) []callResult {
					boom := errors.New("boom")
					r := recoverFrom(func() {
						advisorylock.WithLock(t.Context(), advisorylock.New(e.pool, "x", scope), func(context.Context) (int, error) { panic(boom) })
					})
					if r != boom {
						t.Errorf("recovered %v; want the panic to go on as boom", r)
					}
					return []callResult{{"WithLock", nil}}
				}},
			badCase{name: "WithLock: fn calls runtime.Goexit, " + label,
				run: func(t *testing.T, e *badEnv) []callResult {
					done := make(chan bool)
					go func() {
						returned := false
						defer func() { done <- returned }()
						advisorylock.WithLock(context.Background(), advisorylock.New(e.pool, "x", scope), func(context.Context) (int, error) {
							runtime.Goexit()
							return 0, nil
						})
						returned = true
					}()
					if <-done {
						t.Error("WithLock returned; want runtime.Goexit to go on")
					}
					return []callResult{{"WithLock", nil}}
				}},
		)
	}
	cases = append(cases,
		badCase{name: "WithLock: fn panics with nil",
			run: func(t *testing.T, e *badEnv) []callResult {
				r := recoverFrom(func() {
					advisorylock.WithLock(t.Context(), advisorylock.New(e.pool, "x"), func(context.Context) (int, error) { panic(nil) })
				})
				var pn *runtime.PanicNilError
				if err, ok := r.(error); !ok || !errors.As(err, &pn) {
					t.Errorf("recovered %v; want a *runtime.PanicNilError", r)
				}
				return []callResult{{"WithLock", nil}}
			}},
		badCase{name: "WithLock: fn releases the lock itself", want: []error{advisorylock.ErrNotHeld},
			run: func(t *testing.T, e *badEnv) []callResult {
				v, err := advisorylock.WithLock(t.Context(), advisorylock.New(e.pool, "x"), func(ctx context.Context) (int, error) {
					l, _ := advisorylock.LockFromContext(ctx)
					return 7, l.Unlock(ctx)
				})
				if v != 7 {
					t.Errorf("WithLock = %d; want fn's value 7", v)
				}
				return []callResult{{"WithLock", err}}
			}},
		badCase{name: "WithLock: ctx cancelled while fn runs",
			run: func(t *testing.T, e *badEnv) []callResult {
				ctx, cancel := context.WithCancel(t.Context())
				v, err := advisorylock.WithLock(ctx, advisorylock.New(e.pool, "x", advisorylock.TransactionScope()), func(context.Context) (int, error) {
					cancel()
					return 7, nil
				})
				if v != 7 {
					t.Errorf("WithLock = %d; want 7", v)
				}
				return []callResult{{"WithLock", err}}
			}},
		badCase{name: "WithLock: nested on the same Mutex", want: []error{context.DeadlineExceeded},
			run: func(t *testing.T, e *badEnv) []callResult {
				m := advisorylock.New(e.pool, "x")
				_, err := advisorylock.WithLock(t.Context(), m, func(ctx context.Context) (int, error) {
					ctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
					defer cancel()
					return advisorylock.WithLock(ctx, m, noFn)
				})
				return []callResult{{"WithLock", err}}
			}},
	)

	// Holders with bad arguments.
	cases = append(cases,
		badCase{name: "Holders: nil pool", want: []error{advisorylock.ErrInvalidArgument}, noIO: true,
			run: func(t *testing.T, e *badEnv) []callResult {
				hs, err := advisorylock.Holders(t.Context(), nil, advisorylock.Int64Key(1))
				if hs != nil {
					t.Errorf("Holders = %v; want nil", hs)
				}
				return []callResult{{"Holders", err}}
			}},
		badCase{name: "Holders: cancelled context", want: []error{context.Canceled}, noIO: true,
			run: func(t *testing.T, e *badEnv) []callResult {
				_, err := advisorylock.Holders(cancelledCtx(), e.pool, advisorylock.Int64Key(1))
				return []callResult{{"Holders", err}}
			}},
		badCase{name: "Holders: extreme keys",
			run: func(t *testing.T, e *badEnv) []callResult {
				var rs []callResult
				for _, k := range []advisorylock.Key{{}, advisorylock.Int64Key(math.MinInt64), advisorylock.Int64Key(-1),
					advisorylock.PairKey(math.MinInt32, math.MaxInt32), advisorylock.PairKey(-1, -1)} {
					holder, err := advisorylock.NewWithKey(e.other, k).Lock(t.Context())
					if err != nil {
						t.Fatal(err)
					}
					hs, err := advisorylock.Holders(t.Context(), e.pool, k)
					if err == nil && (len(hs) != 1 || !hs[0].Granted) {
						t.Errorf("Holders(%v) = %+v; want the one holder", k, hs)
					}
					rs = append(rs, callResult{"Holders " + k.String(), err}, callResult{"Unlock", holder.Unlock(t.Context())})
				}
				return rs
			}},
	)

	// A closed pool: pgxpool's closed-pool error, wrapped.
	cases = append(cases,
		badCase{name: "closed pool",
			run: func(t *testing.T, e *badEnv) []callResult {
				// The sentinel is known only at run time: checked here.
				for _, m := range []*advisorylock.Mutex{
					advisorylock.New(e.closed, "x"),
					advisorylock.New(e.closed, "x", advisorylock.TransactionScope()),
					advisorylock.NewSet(e.closed, []string{"a", "b"}, advisorylock.Shared()),
					advisorylock.New(e.closed, "x", advisorylock.WithHooks(newHookRecorder("r"))),
				} {
					for _, r := range mutexCalls(t.Context(), m) {
						if !errors.Is(r.err, e.closedErr) {
							t.Errorf("%s on %v: %v; want the closed-pool error %v", r.call, m, r.err, e.closedErr)
						}
					}
				}
				_, err := advisorylock.Holders(t.Context(), e.closed, advisorylock.Int64Key(1))
				if !errors.Is(err, e.closedErr) {
					t.Errorf("Holders: %v; want the closed-pool error", err)
				}
				return []callResult{{"checked above", nil}}
			}},
		badCase{name: "pool closed while a lock is held",
			run: func(t *testing.T, e *badEnv) []callResult {
				pool := pgtest.NewPool(t, e.dsn)
				l, err := advisorylock.New(pool, "x").Lock(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				closed := make(chan struct{})
				go func() {
					pool.Close() // waits for the held connection
					close(closed)
				}()
				time.Sleep(20 * time.Millisecond)
				unlockErr := l.Unlock(t.Context())
				select {
				case <-closed:
				case <-time.After(10 * time.Second):
					t.Fatal("pool.Close still blocked 10s after Unlock")
				}
				_, lockErr := advisorylock.New(pool, "x").Lock(t.Context())
				if lockErr == nil {
					t.Error("Lock on the closed pool succeeded")
				}
				return []callResult{{"Unlock", unlockErr}}
			}},
	)

	return cases
}

// panickyHook panics in every method: a Mutex with bad input must not call it.
type panickyHook struct{}

func (panickyHook) AcquireStart(context.Context, *advisorylock.Mutex, advisorylock.AcquireStartData) context.Context {
	panic("AcquireStart called")
}

func (panickyHook) AcquireEnd(context.Context, *advisorylock.Mutex, advisorylock.AcquireEndData) {
	panic("AcquireEnd called")
}
