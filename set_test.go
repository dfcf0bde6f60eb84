package advisorylock_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// advisoryLocksOf counts the granted advisory locks of each session in the
// pool's database.
func advisoryLocksOf(t *testing.T, pool *pgxpool.Pool) map[int32]int {
	t.Helper()
	got := map[int32]int{}
	for _, pid := range pgtest.AdvisoryLockPIDs(t, pool, "granted") {
		got[pid]++
	}
	return got
}

func names(n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("job-%02d", i)
	}
	return s
}

// A job that needs 20 locks takes them on one connection, in one round trip,
// and gives them all back together.
func TestSet_oneConnection(t *testing.T) {
	t.Parallel()
	for _, scope := range []advisorylock.Option{nil, advisorylock.TransactionScope()} {
		dsn := pgtest.Database(t)
		pool := pgtest.NewPool(t, dsn)
		monitor := pgtest.NewPool(t, dsn)
		m := advisorylock.NewSet(pool, names(20), scope)
		t.Run(m.Scope().String(), func(t *testing.T) {
			got, err := advisorylock.WithLock(t.Context(), m, func(ctx context.Context) (map[int32]int, error) {
				// A transaction-scoped set holds a pooled connection; a
				// session-scoped one, a lock session and none of the pool's.
				want := int32(1)
				if m.Scope() == advisorylock.ScopeSession {
					want = 0
				}
				if n := pool.Stat().AcquiredConns(); n != want {
					t.Errorf("%d connections acquired for a set of 20; want %d", n, want)
				}
				return advisoryLocksOf(t, monitor), nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 {
				t.Fatalf("sessions holding the set's locks: %v; want one session holding 20", got)
			}
			for _, n := range got {
				if n != 20 {
					t.Errorf("one session holds %d advisory locks; want 20", n)
				}
			}
			if left := advisoryLocksOf(t, monitor); len(left) != 0 {
				t.Errorf("after WithLock, locks held: %v; want none", left)
			}
		})
	}
}

// Each key of a set excludes single-key holders of that key, and the set is
// taken whole or not at all.
func TestSet_excludes(t *testing.T) {
	t.Parallel()
	pool, other := twoPools(t)
	set := advisorylock.NewSet(pool, []string{"a", "b", "c"})
	if got, want := len(set.Keys()), 3; got != want {
		t.Fatalf("Keys() has %d keys; want %d", got, want)
	}
	l, err := set.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b", "c"} {
		if _, err := advisorylock.New(other, name).TryLock(t.Context()); !errors.Is(err, advisorylock.ErrLocked) {
			t.Errorf("TryLock(%q) while the set is held = %v; want ErrLocked", name, err)
		}
	}
	if d, err := advisorylock.New(other, "d").TryLock(t.Context()); err != nil {
		t.Errorf("TryLock of a key outside the set = %v; want success", err)
	} else if err := d.Unlock(t.Context()); err != nil {
		t.Error(err)
	}
	if err := l.Unlock(t.Context()); err != nil {
		t.Fatal(err)
	}

	// A TryLock of a set of which one key is busy takes none of them.
	b, err := advisorylock.New(other, "b").Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := set.TryLock(t.Context()); !errors.Is(err, advisorylock.ErrLocked) {
		t.Fatalf("TryLock of the set while b is held = %v; want ErrLocked", err)
	}
	if got := advisoryLocksOf(t, other); len(got) != 1 {
		t.Errorf("after the failed TryLock, sessions holding locks: %v; want only b's holder", got)
	}
	if err := b.Unlock(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// Two callers locking overlapping sets, named in opposite orders, never
// deadlock: every set is taken in the same order.
func TestSet_noDeadlock(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Database(t)
	sets := [][]string{
		{"a", "b", "c", "d"},
		{"d", "c", "b", "a"},
		{"c", "a"},
		{"b", "d", "a"},
	}
	const rounds = 30
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		owners = map[string]int{}
	)
	for i, names := range sets {
		// Pools of their own, so that the sets meet in the server.
		m := advisorylock.NewSet(pgtest.NewPool(t, dsn), names)
		wg.Go(func() {
			for range rounds {
				_, err := advisorylock.WithLock(t.Context(), m, func(context.Context) (struct{}, error) {
					mu.Lock()
					for _, n := range names {
						if o, ok := owners[n]; ok {
							t.Errorf("set %d took %q while set %d held it", i, n, o)
						}
						owners[n] = i
					}
					mu.Unlock()
					mu.Lock()
					for _, n := range names {
						delete(owners, n)
					}
					mu.Unlock()
					return struct{}{}, nil
				})
				if err != nil {
					t.Errorf("set %d: %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// The timeout bounds the wait for the whole set, not each key's.
func TestSet_timeoutCoversSet(t *testing.T) {
	// Serial: the wait must end within 150ms of its bound.
	for _, scope := range []advisorylock.Option{nil, advisorylock.TransactionScope()} {
		dsn := pgtest.Database(t)
		pool := pgtest.NewPool(t, dsn)
		other := pgtest.NewPool(t, dsn)
		const bound = 300 * time.Millisecond
		m := advisorylock.NewSet(pool, []string{"a", "b"}, advisorylock.WithTimeout(bound), scope)
		t.Run(m.Scope().String(), func(t *testing.T) {
			// The set takes its keys in a fixed order; hold both, and let the
			// first go once the set waits for it: the set then waits for the
			// second, which stays held.
			first, second := m.Keys()[0], m.Keys()[1]
			l1, err := advisorylock.NewWithKey(other, first).Lock(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			l2, err := advisorylock.NewWithKey(other, second).Lock(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			defer l2.Unlock(context.Background())
			errc := make(chan error, 1)
			start := time.Now()
			go func() {
				_, err := m.Lock(t.Context())
				errc <- err
			}()
			pgtest.AwaitWaiters(t, other, 1)
			if err := l1.Unlock(t.Context()); err != nil {
				t.Fatal(err)
			}
			err = <-errc
			elapsed := time.Since(start)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Lock = %v; want context.DeadlineExceeded", err)
			}
			t.Logf("set gave up %v after its %v bound", elapsed-bound, bound)
			// Had each key's wait been bounded alone, the set would have waited
			// for the first key and then the whole bound again for the second.
			if elapsed > bound+bound/2 {
				t.Errorf("set gave up after %v; want about its bound %v", elapsed, bound)
			}
			if got := advisoryLocksOf(t, other); len(got) != 1 {
				t.Errorf("after the timeout, sessions holding locks: %v; want only the second key's holder", got)
			}
		})
	}
}

// Shared sets hold together and keep exclusive holders of any of their keys
// out.
func TestSet_shared(t *testing.T) {
	t.Parallel()
	pool, other := twoPools(t)
	m := advisorylock.NewSet(pool, []string{"x", "y"}, advisorylock.Shared())
	l1, err := m.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	l2, err := m.TryLock(t.Context())
	if err != nil {
		t.Fatalf("second shared holder of the set: %v", err)
	}
	if _, err := advisorylock.New(other, "y").TryLock(t.Context()); !errors.Is(err, advisorylock.ErrLocked) {
		t.Errorf("exclusive TryLock of a shared set's key = %v; want ErrLocked", err)
	}
	for _, l := range []*advisorylock.Lock{l1, l2} {
		if err := l.Unlock(t.Context()); err != nil {
			t.Error(err)
		}
	}
}

// Duplicates collapse, and the locking order does not depend on the order
// the caller named the keys in.
func TestNewSet_order(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t, pgtest.Database(t))
	a := advisorylock.NewSet(pool, []string{"a", "b", "c", "b"})
	b := advisorylock.NewSet(pool, []string{"c", "a", "b"})
	if len(a.Keys()) != 3 {
		t.Fatalf("Keys() = %v; want 3 distinct keys", a.Keys())
	}
	for i := range a.Keys() {
		if a.Keys()[i] != b.Keys()[i] {
			t.Fatalf("Keys() = %v and %v; want the same order", a.Keys(), b.Keys())
		}
	}
	for _, m := range []*advisorylock.Mutex{
		advisorylock.NewSet(pool, nil),
		advisorylock.NewSet(pool, []string{"a", ""}),
		advisorylock.NewSetWithKeys(pool, nil),
	} {
		if _, err := m.Lock(t.Context()); !errors.Is(err, advisorylock.ErrInvalidArgument) || !strings.Contains(err.Error(), "empty lock name") {
			t.Errorf("Lock of %v = %v; want ErrInvalidArgument for an empty lock name", m, err)
		}
	}
}
