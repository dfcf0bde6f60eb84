package advisorylock_test

import (
	"context"
	"testing"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// countingLocker is a Locker built on a Mutex, as a semaphore is: it counts
// its acquisitions.
type countingLocker struct {
	m     *advisorylock.Mutex
	calls int
}

func (c *countingLocker) Lock(ctx context.Context) (*advisorylock.Lock, error) {
	c.calls++
	return c.m.Lock(ctx)
}

// nilLocker is a Locker whose Lock returns neither a lock nor an error.
type nilLocker struct{}

func (nilLocker) Lock(context.Context) (*advisorylock.Lock, error) { return nil, nil }

// WithLock takes any Locker, and the lock it returns behaves as a Mutex's:
// fn's context carries it, and it is released when fn returns.
func TestWithLock_locker(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Database(t)
	pool := pgtest.NewPool(t, dsn)
	c := &countingLocker{m: advisorylock.New(pool, "locker")}
	got, err := advisorylock.WithLock(t.Context(), c, func(ctx context.Context) (string, error) {
		l, ok := advisorylock.LockFromContext(ctx)
		if !ok || l.Mutex() != c.m {
			t.Errorf("LockFromContext = %v, %v; want the Locker's lock", l, ok)
		}
		pgtest.AwaitHolders(t, pool, 1)
		return "done", nil
	})
	if got != "done" || err != nil {
		t.Fatalf("WithLock = %q, %v; want \"done\", nil", got, err)
	}
	if c.calls != 1 {
		t.Errorf("Locker called %d times; want 1", c.calls)
	}
	pgtest.AwaitHolders(t, pool, 0)
}

// A nil Locker, a nil pointer in one, and a Locker that returns no lock fail
// with ErrInvalidArgument, without a panic and before fn runs.
func TestWithLock_badLocker(t *testing.T) {
	// Serial: runBadInput checks the whole process for leaked goroutines.
	fn := func(context.Context) (int, error) {
		t.Error("fn called")
		return 1, nil
	}
	call := func(l advisorylock.Locker) []callResult {
		v, err := advisorylock.WithLock(context.Background(), l, fn)
		if v != 0 {
			t.Errorf("WithLock = %d; want the zero value", v)
		}
		return []callResult{{"WithLock", err}}
	}
	runBadInput(t, []badCase{
		{name: "nil Locker", want: []error{advisorylock.ErrInvalidArgument}, msg: "nil Mutex", noIO: true,
			run: func(t *testing.T, e *badEnv) []callResult { return call(nil) }},
		{name: "nil *Mutex in a Locker", want: []error{advisorylock.ErrInvalidArgument}, msg: "nil Mutex", noIO: true,
			run: func(t *testing.T, e *badEnv) []callResult { return call((*advisorylock.Mutex)(nil)) }},
		{name: "nil pointer of another type", want: []error{advisorylock.ErrInvalidArgument}, msg: "nil *advisorylock_test.countingLocker", noIO: true,
			run: func(t *testing.T, e *badEnv) []callResult { return call((*countingLocker)(nil)) }},
		{name: "no lock and no error", want: []error{advisorylock.ErrInvalidArgument}, msg: "returned no lock", noIO: true,
			run: func(t *testing.T, e *badEnv) []callResult { return call(nilLocker{}) }},
	})
}
