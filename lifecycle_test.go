package advisorylock_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// Concurrent timed Lock calls on one set Mutex with AllowPooler each send
// their own lock_timeout. The set's key arguments are shared by every call;
// a call that appended its timeout to them wrote into an array the other
// calls were appending to as well (a data race, which -race reports).
func TestLock_concurrentTimeoutsOnOneSet(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t, pgtest.Database(t), func(c *pgxpool.Config) { c.MaxConns = 4 })
	m := advisorylock.NewSet(pool, []string{"a", "b", "c"}, advisorylock.AllowPooler(), advisorylock.Shared())
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				// Deadlines differ per goroutine and call, so each call's
				// lock_timeout differs from its neighbours'.
				ctx, cancel := context.WithTimeout(t.Context(), time.Duration(10+g*7+i)*time.Second)
				l, err := m.Lock(ctx)
				cancel()
				if err != nil {
					t.Errorf("goroutine %d, call %d: %v", g, i, err)
					return
				}
				if err := l.Unlock(t.Context()); err != nil {
					t.Errorf("goroutine %d, call %d: Unlock: %v", g, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// WithLock's release bound is a timer armed over the lock's connection. When
// the lock was lost while fn ran, its connection is already closed and taken
// out of the pool by the time the release starts; a timer firing then must
// not touch the pooled connection (which is gone), only the socket it was
// armed with.
func TestWithLock_releaseBoundAfterLoss(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Database(t)
	pool := pgtest.NewPool(t, dsn)
	admin := pgtest.NewPool(t, dsn)
	// A bound that fires at once: the timer races the release's own checks.
	m := advisorylock.New(pool, "bound-after-loss", advisorylock.WithReleaseTimeout(time.Nanosecond))
	for i := range 20 {
		_, err := advisorylock.WithLock(t.Context(), m, func(ctx context.Context) (int, error) {
			l, _ := advisorylock.LockFromContext(ctx)
			terminateAndWait(t, admin, l.PID())
			<-ctx.Done()
			return 0, context.Cause(ctx)
		})
		if !errors.Is(err, advisorylock.ErrLockLost) {
			t.Fatalf("iteration %d: WithLock = %v; want ErrLockLost", i, err)
		}
	}
}

// Unlock is bounded by its context even while the lock's watcher waits for
// the answer to a keepalive probe from a server gone silent: it closes the
// connection (which ends the session and the lock with it) rather than wait
// for the probe's own bound, a whole keepalive interval.
func TestUnlock_boundedDuringProbe(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Database(t)
	proxy := pgtest.Require(t).Proxy(t)
	pool := pgtest.NewPool(t, dsn, pgtest.ViaProxy(proxy, false))
	const keepalive = 3 * time.Second
	m := advisorylock.New(pool, "unlock-during-probe", advisorylock.WithKeepalive(keepalive))
	l, err := m.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	proxy.Freeze()
	// The watcher probes after a keepalive interval of silence; await the
	// probe's departure into the frozen network.
	deadline := time.Now().Add(3 * keepalive)
	for l.ProbesSent() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no keepalive probe sent")
		}
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = l.Unlock(ctx)
	took := time.Since(start)
	proxy.Thaw()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Unlock = %v; want context.DeadlineExceeded", err)
	}
	// The probe's own bound would end it a keepalive after it was sent.
	if took >= keepalive/2 {
		t.Errorf("Unlock took %v with a 100ms context; want it bounded by the context, not the probe (%v)", took, keepalive)
	}
	select {
	case <-l.Done():
	default:
		t.Error("Done not closed after Unlock returned")
	}
	// The session ended, and the lock with it: another session gets it.
	other := advisorylock.New(pgtest.NewPool(t, dsn), "unlock-during-probe", advisorylock.WithTimeout(10*time.Second))
	l2, err := other.Lock(t.Context())
	if err != nil {
		t.Fatalf("the lock is still held after Unlock: %v", err)
	}
	if err := l2.Unlock(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// A transaction-scoped lock notices a connection that broke under a batch or
// a query run in its transaction, as it does under Exec and QueryRow: the
// lock is lost at once, not only at release.
func TestTx_lostUnderBatchAndQuery(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Database(t)
	pool := pgtest.NewPool(t, dsn)
	admin := pgtest.NewPool(t, dsn)
	for _, tt := range []struct {
		name string
		run  func(ctx context.Context, tx pgx.Tx) error
	}{
		{"SendBatch", func(ctx context.Context, tx pgx.Tx) error {
			b := &pgx.Batch{}
			b.Queue("select 1")
			return tx.SendBatch(ctx, b).Close()
		}},
		{"SendBatch Query", func(ctx context.Context, tx pgx.Tx) error {
			b := &pgx.Batch{}
			b.Queue("select 1")
			br := tx.SendBatch(ctx, b)
			rows, err := br.Query()
			if err == nil {
				rows.Close()
				err = rows.Err()
			}
			return errors.Join(err, br.Close())
		}},
		{"Query", func(ctx context.Context, tx pgx.Tx) error {
			rows, err := tx.Query(ctx, "select 1")
			if err != nil {
				return err
			}
			rows.Close()
			return rows.Err()
		}},
		{"Query CollectRows", func(ctx context.Context, tx pgx.Tx) error {
			rows, err := tx.Query(ctx, "select generate_series(1, 3)")
			if err != nil {
				return err
			}
			_, err = pgx.CollectRows(rows, pgx.RowTo[int32])
			return err
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := advisorylock.New(pool, "tx-lost-"+tt.name, advisorylock.TransactionScope())
			l, err := m.Lock(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			terminateAndWait(t, admin, l.PID())
			if err := tt.run(t.Context(), l.Tx()); err == nil {
				t.Fatal("the statement succeeded on a terminated session")
			}
			select {
			case <-l.Done():
			default:
				t.Fatal("Done not closed after the statement found the connection broken")
			}
			if err := l.Err(); !errors.Is(err, advisorylock.ErrLockLost) {
				t.Errorf("Err = %v; want ErrLockLost", err)
			}
			if err := l.Unlock(t.Context()); !errors.Is(err, advisorylock.ErrLockLost) {
				t.Errorf("Unlock = %v; want ErrLockLost", err)
			}
		})
	}
}

// Every error names the operation the caller called and the lock, after one
// "advisorylock: " prefix, and says each fact once.
func TestErrors_onePrefix(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Database(t)
	pool := pgtest.NewPool(t, dsn)
	admin := pgtest.NewPool(t, dsn)
	ctx := t.Context()
	m := advisorylock.New(pool, "x")
	other := advisorylock.New(pgtest.NewPool(t, dsn), "x")
	check := func(what string, err error, want string, sentinel error) {
		t.Helper()
		switch {
		case err == nil:
			t.Errorf("%s: no error; want %q", what, want)
		case !strings.HasPrefix(err.Error(), want):
			t.Errorf("%s: %q; want it to start %q", what, err, want)
		case strings.Count(err.Error(), "advisorylock:") != 1:
			t.Errorf("%s: %q; want one prefix", what, err)
		case !errors.Is(err, sentinel):
			t.Errorf("%s: %v does not match %v", what, err, sentinel)
		}
		var e *advisorylock.Error
		if !errors.As(err, &e) {
			t.Errorf("%s: %T is not an *advisorylock.Error", what, err)
		}
	}

	held, err := m.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = other.TryLock(ctx)
	check("TryLock busy", err, `advisorylock: trylock "x": locked by another session`, advisorylock.ErrLocked)
	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err = other.Lock(tctx)
	cancel()
	check("Lock timed out", err, `advisorylock: lock "x": context deadline exceeded`, context.DeadlineExceeded)
	if err := held.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	check("Unlock twice", held.Unlock(ctx), `advisorylock: unlock "x": lock not held`, advisorylock.ErrNotHeld)
	check("Err after Unlock", held.Err(), `advisorylock: lock "x": lock not held`, advisorylock.ErrNotHeld)

	lost, err := m.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	terminateAndWait(t, admin, lost.PID())
	<-lost.Done()
	check("Err after a loss", lost.Err(), `advisorylock: lock "x": lock lost: `, advisorylock.ErrLockLost)
	check("Unlock after a loss", lost.Unlock(ctx), `advisorylock: unlock "x": lock lost: `, advisorylock.ErrLockLost)

	_, err = advisorylock.New(pool, "").Lock(ctx)
	check("empty name", err, `advisorylock: lock "": empty lock name`, advisorylock.ErrInvalidArgument)
	_, err = advisorylock.WithLock[int](ctx, m, nil)
	check("nil function", err, `advisorylock: lock "x": nil function`, advisorylock.ErrInvalidArgument)
	_, err = advisorylock.New(pool, "x", advisorylock.WithTimeout(-1)).TryLock(ctx)
	check("negative timeout", err, `advisorylock: trylock "x": WithTimeout(-1ns): negative duration`, advisorylock.ErrInvalidArgument)
}

// KeyFromName's doc comment and README give the same odds of a collision
// among a million names, and they are right: n²/2^65.
func TestKeyFromName_collisionOddsDocumented(t *testing.T) {
	t.Parallel()
	const n = 1e6
	oneIn := float64(uint64(1)<<63) * 4 / (n * n) // 2^65 / n²
	phrase := "one in " + strconv.Itoa(int(oneIn/1e6+0.5)) + " million"
	if phrase != "one in 37 million" {
		t.Fatalf("computed %q", phrase)
	}
	for _, f := range []string{"key.go", "README.md"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if text := strings.Join(strings.Fields(strings.ReplaceAll(string(b), "//", "")), " "); !strings.Contains(text, phrase) {
			t.Errorf("%s does not say %q", f, phrase)
		}
	}
}
