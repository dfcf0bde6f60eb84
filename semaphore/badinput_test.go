package semaphore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/semaphore"
)

// Bad input fails every call with ErrInvalidArgument, saying what was wrong,
// with one prefix, before any round trip and with nothing held.
func TestNew_badInput(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	pool := newPool(t, dsn)
	tests := []struct {
		name string
		s    func() *semaphore.Semaphore
		msg  string
	}{
		{"nil pool", func() *semaphore.Semaphore { return semaphore.New(nil, "x", 1) }, "nil pool"},
		{"empty name", func() *semaphore.Semaphore { return semaphore.New(pool, "", 1) }, "empty semaphore name"},
		{"no slots", func() *semaphore.Semaphore { return semaphore.New(pool, "x", 0) }, "0 slots; want 1 to 1000"},
		{"negative slots", func() *semaphore.Semaphore { return semaphore.New(pool, "x", -3) }, "-3 slots"},
		{"too many slots", func() *semaphore.Semaphore { return semaphore.New(pool, "x", semaphore.MaxSlots+1) }, "1001 slots"},
		{"WithTimeout(-1ns)", func() *semaphore.Semaphore { return semaphore.New(pool, "x", 1, semaphore.WithTimeout(-1)) }, "WithTimeout(-1ns): negative duration"},
		{"WithRecheck(0)", func() *semaphore.Semaphore { return semaphore.New(pool, "x", 1, semaphore.WithRecheck(0)) }, "WithRecheck(0s)"},
		{"WithRecheck below the least", func() *semaphore.Semaphore {
			return semaphore.New(pool, "x", 1, semaphore.WithRecheck(semaphore.MinRecheck-1))
		}, "WithRecheck(9.999999ms)"},
		{"WithRecheck of a month", func() *semaphore.Semaphore { return semaphore.New(pool, "x", 1, semaphore.WithRecheck(720*time.Hour)) }, "WithRecheck(720h0m0s)"},
		{"Shared slots", func() *semaphore.Semaphore {
			return semaphore.New(pool, "x", 1, semaphore.WithSlotOptions(advisorylock.Shared()))
		}, "Shared is not for semaphores"},
		{"transaction-scoped slots", func() *semaphore.Semaphore {
			return semaphore.New(pool, "x", 1, semaphore.WithSlotOptions(advisorylock.TransactionScope()))
		}, "TransactionScope is not for semaphores"},
		{"a bad slot option", func() *semaphore.Semaphore {
			return semaphore.New(pool, "x", 1, semaphore.WithSlotOptions(advisorylock.WithKeepalive(-time.Second)))
		}, "WithKeepalive(-1s): negative duration"},
		{"a bad option is not undone by a later good one", func() *semaphore.Semaphore {
			return semaphore.New(pool, "x", 1, semaphore.WithTimeout(-1), semaphore.WithTimeout(time.Second))
		}, "WithTimeout(-1ns)"},
		{"nil Semaphore", func() *semaphore.Semaphore { return nil }, "nil Semaphore"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := pool.Stat().AcquireCount()
			s := tt.s()
			var errs []error
			for _, lock := range []func(context.Context) (*advisorylock.Lock, error){s.Lock, s.TryLock} {
				l, err := lock(t.Context())
				if l != nil {
					t.Errorf("got a lock")
					release(t, l)
				}
				errs = append(errs, err)
			}
			_, err := s.Holders(t.Context())
			errs = append(errs, err)
			_, err = advisorylock.WithLock(t.Context(), s, func(context.Context) (int, error) {
				t.Error("fn called")
				return 0, nil
			})
			if tt.name == "nil Semaphore" {
				// WithLock does not call a nil pointer.
				if !strings.Contains(err.Error(), "nil *semaphore.Semaphore") {
					t.Errorf("WithLock(nil *Semaphore) = %v; want it to say nil *semaphore.Semaphore", err)
				}
				err = nil
			}
			if err != nil {
				errs = append(errs, err)
			}
			for _, err := range errs {
				checkInvalid(t, err, tt.msg)
			}
			if n := pool.Stat().AcquireCount() - before; n != 0 {
				t.Errorf("%d connections taken from the pool; want none", n)
			}
			if s.Slot(nil) != -1 {
				t.Errorf("Slot(nil) != -1")
			}
			_ = s.String()
		})
	}
}

// WithLock with a nil function fails before any round trip, naming the
// semaphore.
func TestWithLock_nilFunc(t *testing.T) {
	t.Parallel()
	pool := newPool(t, testDB(t))
	before := pool.Stat().AcquireCount()
	_, err := advisorylock.WithLock[int](t.Context(), semaphore.New(pool, "x", 2), nil)
	checkInvalid(t, err, `lock semaphore "x" (2 slots): nil function`)
	if n := pool.Stat().AcquireCount() - before; n != 0 {
		t.Errorf("%d connections taken from the pool; want none", n)
	}
}

// checkInvalid fails t unless err matches ErrInvalidArgument, says msg, and
// has one prefix.
func checkInvalid(t *testing.T, err error, msg string) {
	t.Helper()
	if !errors.Is(err, advisorylock.ErrInvalidArgument) {
		t.Errorf("%v; want ErrInvalidArgument", err)
		return
	}
	text := err.Error()
	if !strings.Contains(text, msg) {
		t.Errorf("%q; want it to say %q", text, msg)
	}
	if n := strings.Count(text, "advisorylock:"); n != 1 {
		t.Errorf("%q has %d prefixes; want 1", text, n)
	}
}

// A pool that is closed fails every call with the pool's error, and leaves
// nothing behind.
func TestLock_closedPool(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	closed, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	s := semaphore.New(closed, "closed", 2)
	for _, lock := range []func(context.Context) (*advisorylock.Lock, error){s.Lock, s.TryLock} {
		if l, err := lock(t.Context()); err == nil || l != nil {
			t.Errorf("on a closed pool: %v, %v; want an error", l, err)
		}
	}
}
