package advisorylock_test

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// Holders lists holders before waiters, with the sessions' identities, for
// every kind of key.
func TestHolders(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Database(t)
	holderPool := pgtest.NewPool(t, dsn, appName("the-holder"))
	waiterPool := pgtest.NewPool(t, dsn, appName("the-waiter"))
	admin := pgtest.NewPool(t, dsn)
	for _, key := range []advisorylock.Key{
		advisorylock.KeyFromName("report"),
		advisorylock.PairKey(math.MinInt32, -1),
		advisorylock.Int64Key(math.MinInt64 + 7),
		advisorylock.Int64Key(1<<32 + 5),
	} {
		t.Run(key.String(), func(t *testing.T) {
			before := time.Now()
			l, err := advisorylock.NewWithKey(holderPool, key, advisorylock.Shared()).Lock(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			defer l.Unlock(context.Background())
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			errc := make(chan error, 1)
			go func() {
				_, err := advisorylock.NewWithKey(waiterPool, key).Lock(ctx)
				errc <- err
			}()
			pgtest.AwaitWaiters(t, admin, 1)

			// A set of the key and one nobody holds: only the key's rows.
			hs, err := advisorylock.NewSetWithKeys(admin, []advisorylock.Key{key, advisorylock.Int64Key(42)}).Holders(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if len(hs) != 2 {
				t.Fatalf("Holders = %+v; want a holder and a waiter", hs)
			}
			h, w := hs[0], hs[1]
			if !h.Granted || h.Mode != advisorylock.ModeShared || h.ApplicationName != "the-holder" || h.Key != key {
				t.Errorf("first = %+v; want the shared holder of %v named the-holder", h, key)
			}
			if w.Granted || w.Mode != advisorylock.ModeExclusive || w.ApplicationName != "the-waiter" || w.Key != key {
				t.Errorf("second = %+v; want the exclusive waiter for %v named the-waiter", w, key)
			}
			for _, x := range hs {
				if x.PID == 0 || x.User == "" || x.ClientAddr != "127.0.0.1" {
					t.Errorf("%+v: want a pid, a user and the client address 127.0.0.1", x)
				}
				if x.Since.Before(before.Add(-time.Second)) || x.Since.After(time.Now().Add(time.Second)) {
					t.Errorf("%+v: Since %v; want during the test (clocks within 1s)", x, x.Since)
				}
			}
			cancel()
			if err := <-errc; !errors.Is(err, context.Canceled) {
				t.Fatalf("waiter: %v; want context.Canceled", err)
			}
		})
	}
}

// A set's Holders covers each of its keys.
func TestMutexHolders_set(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Database(t)
	pool := pgtest.NewPool(t, dsn)
	m := advisorylock.NewSet(pool, []string{"a", "b", "c"})
	hs, err := m.Holders(t.Context())
	if err != nil || len(hs) != 0 {
		t.Fatalf("Holders of a free set = %+v, %v; want none", hs, err)
	}
	l, err := m.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock(context.Background())
	hs, err = advisorylock.NewSet(pgtest.NewPool(t, dsn), []string{"c", "b", "a"}).Holders(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[advisorylock.Key]bool{}
	for _, h := range hs {
		seen[h.Key] = true
		if h.PID != hs[0].PID || !h.Granted {
			t.Errorf("%+v: want a granted lock of the one holding session %d", h, hs[0].PID)
		}
	}
	for _, k := range m.Keys() {
		if !seen[k] {
			t.Errorf("Holders = %+v; want key %v listed", hs, k)
		}
	}
	if len(hs) != 3 {
		t.Errorf("Holders listed %d rows; want 3", len(hs))
	}
}

// A session-scoped holder's Since is when the lock was granted, also after
// keepalive probes have run on its session: a pinned connection's, or a lock
// session's, whose probe lists each lock it carries.
func TestHolders_sinceGranted(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		opt  advisorylock.Option
	}{{"pinned", advisorylock.PinConnection()}, {"lock sessions", nil}} {
		t.Run(tt.name, func(t *testing.T) {
			dsn := pgtest.Database(t)
			pool := pgtest.NewPool(t, dsn, appName("prober"))
			admin := pgtest.NewPool(t, dsn)
			// A probe the server does not answer within an interval loses
			// the lock: the interval leaves a loaded machine time to answer.
			m := advisorylock.New(pool, "since", advisorylock.WithKeepalive(200*time.Millisecond), tt.opt)
			before := time.Now()
			l, err := m.Lock(t.Context())
			after := time.Now()
			if err != nil {
				t.Fatal(err)
			}
			defer l.Unlock(context.Background())
			// Await a probe that ran well after the grant.
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			for {
				var probed bool
				if err := admin.QueryRow(ctx, `select coalesce(bool_or(query like '-- advisorylock%' and state_change > $1), false)
					from pg_stat_activity where application_name = 'prober' and datname = current_database()`, after.Add(100*time.Millisecond)).Scan(&probed); err != nil {
					t.Fatal(err)
				}
				if probed {
					break
				}
				select {
				case <-ctx.Done():
					t.Fatal("no keepalive probe seen on the holder's session")
				case <-time.After(10 * time.Millisecond):
				}
			}
			hs, err := m.Holders(t.Context())
			if err != nil || len(hs) != 1 {
				t.Fatalf("Holders = %+v, %v; want one holder", hs, err)
			}
			// The server's clock is this machine's; allow a little for
			// rounding.
			const slack = 5 * time.Millisecond
			if s := hs[0].Since; s.Before(before.Add(-slack)) || s.After(after.Add(slack)) {
				t.Errorf("Since = %v; want the grant, between %v and %v", s, before, after)
			}
		})
	}
}
