package advisorylock_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// WithLock with bad arguments, and with a hostile function.
func TestWithLock_badInput(t *testing.T) {
	// Serial: runBadInput checks the whole process for leaked goroutines.
	cases := []badCase{
		{name: "nil fn", want: []error{advisorylock.ErrInvalidArgument}, msg: "nil function", noIO: true,
			run: func(t *testing.T, e *badEnv) []callResult {
				v, err := advisorylock.WithLock[int](t.Context(), advisorylock.New(e.pool, "x"), nil)
				if v != 0 {
					t.Errorf("WithLock = %d; want the zero value", v)
				}
				return []callResult{{"WithLock", err}}
			}},
		{name: "nil fn on a nil Mutex", want: []error{advisorylock.ErrInvalidArgument}, msg: "nil Mutex", noIO: true,
			run: func(t *testing.T, e *badEnv) []callResult {
				_, err := advisorylock.WithLock[string](t.Context(), nil, nil)
				return []callResult{{"WithLock", err}}
			}},
		{name: "nil fn on a bad Mutex", want: []error{advisorylock.ErrInvalidArgument}, msg: "nil function", noIO: true,
			run: func(t *testing.T, e *badEnv) []callResult {
				_, err := advisorylock.WithLock[int](t.Context(), advisorylock.New(nil, ""), nil)
				return []callResult{{"WithLock", err}}
			}},
	}
	for _, scope := range scopes {
		cases = append(cases,
			badCase{name: "fn panics, " + scope.label,
				run: func(t *testing.T, e *badEnv) []callResult {
					boom := errors.New("boom")
					r := recoverFrom(func() {
						advisorylock.WithLock(t.Context(), advisorylock.New(e.pool, "x", scope.opt), func(context.Context) (int, error) { panic(boom) })
					})
					if r != boom {
						t.Errorf("recovered %v; want the panic to go on as boom", r)
					}
					return []callResult{{"WithLock", nil}}
				}},
			badCase{name: "fn calls runtime.Goexit, " + scope.label,
				run: func(t *testing.T, e *badEnv) []callResult {
					done := make(chan bool)
					go func() {
						returned := false
						defer func() { done <- returned }()
						advisorylock.WithLock(context.Background(), advisorylock.New(e.pool, "x", scope.opt), func(context.Context) (int, error) {
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
		badCase{name: "fn panics with nil",
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
		badCase{name: "fn releases the lock itself", want: []error{advisorylock.ErrNotHeld},
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
		badCase{name: "ctx cancelled while fn runs",
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
		badCase{name: "nested on the same Mutex", want: []error{context.DeadlineExceeded},
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
	runBadInput(t, cases)
}

// A Lock misused: released twice, concurrently, from elsewhere, with a done
// context, or nil; its transaction used after release or ended by hand; its
// Mutex locked again.
func TestLock_misused(t *testing.T) {
	// Serial: runBadInput checks the whole process for leaked goroutines.
	var cases []badCase
	for _, scope := range scopes {
		cases = append(cases,
			badCase{name: "Unlock twice, " + scope.label, want: []error{advisorylock.ErrNotHeld},
				run: func(t *testing.T, e *badEnv) []callResult {
					l, err := advisorylock.New(e.pool, "x", scope.opt).Lock(t.Context())
					if err != nil {
						t.Fatal(err)
					}
					if err := l.Unlock(t.Context()); err != nil {
						t.Fatal(err)
					}
					return []callResult{{"Unlock", l.Unlock(t.Context())}, {"Rollback", l.Rollback(t.Context())}, {"Err", l.Err()}}
				}},
			badCase{name: "Rollback then Unlock, " + scope.label, want: []error{advisorylock.ErrNotHeld},
				run: func(t *testing.T, e *badEnv) []callResult {
					l, err := advisorylock.New(e.pool, "x", scope.opt).Lock(t.Context())
					if err != nil {
						t.Fatal(err)
					}
					if err := l.Rollback(t.Context()); err != nil {
						t.Fatal(err)
					}
					return []callResult{{"Unlock", l.Unlock(t.Context())}}
				}},
			badCase{name: "Unlock and Rollback racing from 8 goroutines, " + scope.label,
				run: func(t *testing.T, e *badEnv) []callResult {
					l, err := advisorylock.New(e.pool, "x", scope.opt).Lock(t.Context())
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
			badCase{name: "Unlock from another goroutine, " + scope.label,
				run: func(t *testing.T, e *badEnv) []callResult {
					l, err := advisorylock.New(e.pool, "x", scope.opt).Lock(t.Context())
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
		badCase{name: "TryLock on an exhausted pool waits for a connection, bounded by ctx (PinConnection)", want: []error{context.DeadlineExceeded},
			run: func(t *testing.T, e *badEnv) []callResult {
				one := pgtest.NewPool(t, e.dsn, func(c *pgxpool.Config) { c.MaxConns = 1 })
				l, err := advisorylock.New(one, "a", advisorylock.PinConnection()).Lock(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				defer l.Unlock(context.Background())
				ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
				defer cancel()
				_, err = advisorylock.New(one, "b", advisorylock.PinConnection()).TryLock(ctx)
				return []callResult{{"TryLock", err}}
			}},
		badCase{name: "session locks on lock sessions need none of an exhausted pool's connections",
			run: func(t *testing.T, e *badEnv) []callResult {
				one := pgtest.NewPool(t, e.dsn, func(c *pgxpool.Config) { c.MaxConns = 1 })
				c, err := one.Acquire(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Release()
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				l, err := advisorylock.New(one, "b").TryLock(ctx)
				if err == nil {
					err = l.Unlock(ctx)
				}
				return []callResult{{"TryLock", err}}
			}},
	)
	runBadInput(t, cases)
}

// A closed pool: pgxpool's closed-pool error, wrapped, from every entry
// point.
func TestClosedPool_badInput(t *testing.T) {
	// Serial: runBadInput checks the whole process for leaked goroutines.
	runBadInput(t, []badCase{
		{name: "closed pool",
			run: func(t *testing.T, e *badEnv) []callResult {
				// The sentinel is known only at run time: checked here.
				closedPool := badCase{want: []error{e.closedErr}}
				for _, m := range []*advisorylock.Mutex{
					// Lock sessions are the package's, not the pool's: a
					// closed pool does not close them. Its own connections
					// are another matter.
					advisorylock.New(e.closed, "x", advisorylock.PinConnection()),
					advisorylock.New(e.closed, "x", advisorylock.TransactionScope()),
					advisorylock.NewSet(e.closed, []string{"a", "b"}, advisorylock.Shared(), advisorylock.PinConnection()),
					advisorylock.NewWithKey(e.closed, advisorylock.Int64Key(1), advisorylock.PinConnection()),
					advisorylock.New(e.closed, "x", advisorylock.WithHooks(newHookRecorder("r")), advisorylock.PinConnection()),
				} {
					for _, r := range mutexCalls(t.Context(), m) {
						r.call += " on " + m.String()
						checkBadResult(t, closedPool, r)
					}
				}
				return []callResult{{"checked above", nil}}
			}},
		{name: "pool closed while a lock is held",
			run: func(t *testing.T, e *badEnv) []callResult {
				pool := pgtest.NewPool(t, e.dsn)
				l, err := advisorylock.New(pool, "x", advisorylock.PinConnection()).Lock(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				closed := make(chan struct{})
				go func() {
					pool.Close() // waits for the held connection
					close(closed)
				}()
				awaitClosing(t, pool, e.closedErr)
				unlockErr := l.Unlock(t.Context())
				select {
				case <-closed:
				case <-time.After(10 * time.Second):
					t.Fatal("pool.Close still blocked 10s after Unlock")
				}
				_, lockErr := advisorylock.New(pool, "x", advisorylock.PinConnection()).Lock(t.Context())
				if lockErr == nil {
					t.Error("Lock on the closed pool succeeded")
				}
				return []callResult{{"Unlock", unlockErr}}
			}},
	})
}

// awaitClosing waits until pool refuses connections with closedErr, once its
// Close has begun, or fails t after 10s.
func awaitClosing(t *testing.T, pool *pgxpool.Pool, closedErr error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := pool.Acquire(t.Context())
		if errors.Is(err, closedErr) {
			return
		}
		if err == nil {
			c.Release()
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pool still hands out connections 10s after Close began (%v)", err)
		}
		time.Sleep(time.Millisecond) // polling: nothing signals that Close has begun
	}
}
