package advisorylock_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/interleave"
	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// benchPool returns a pool on a database of the benchmark's own, shared by
// all sub-benchmarks so that their figures compare.
func benchPool(b *testing.B, maxConns int32) *pgxpool.Pool {
	b.Helper()
	dsn := pgtest.Require(b).CreateDatabase(b)
	return pgtest.NewPool(b, dsn, func(c *pgxpool.Config) { c.MaxConns = maxConns })
}

var benchKey = advisorylock.KeyFromName("bench")

// BenchmarkFloor is raw pgx doing the same work: the floor each
// BenchmarkWithLock figure is a ratio to. "session" and "transaction" run on
// one pinned connection: the physical floor (two round trips for a session
// lock, one batch and a COMMIT for a transaction lock). "session-pool" and
// "transaction-pool" take a connection from the pool for each cycle, as a
// lock must.
func BenchmarkFloor(b *testing.B) {
	pool := benchPool(b, 2)
	k1, k2, _ := benchKey.Pair()
	session := func(ctx context.Context, conn *pgxpool.Conn) {
		if _, err := conn.Exec(ctx, "select pg_advisory_lock($1,$2)", k1, k2); err != nil {
			b.Fatal(err)
		}
		var ok bool
		if err := conn.QueryRow(ctx, "select pg_advisory_unlock($1,$2)", k1, k2).Scan(&ok); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
	transaction := func(ctx context.Context, conn *pgxpool.Conn) {
		batch := &pgx.Batch{}
		batch.BeginTx(pgx.TxOptions{})
		batch.Queue("select pg_advisory_xact_lock($1,$2)", k1, k2)
		br := conn.SendBatch(ctx, batch)
		if err := br.Close(); err != nil {
			b.Fatal(err)
		}
		if err := br.Tx().Commit(ctx); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range []struct {
		name  string
		cycle func(context.Context, *pgxpool.Conn)
	}{{"session", session}, {"transaction", transaction}} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			conn, err := pool.Acquire(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Release()
			b.ReportAllocs()
			for b.Loop() {
				c.cycle(ctx, conn)
			}
		})
		b.Run(c.name+"-pool", func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				conn, err := pool.Acquire(ctx)
				if err != nil {
					b.Fatal(err)
				}
				c.cycle(ctx, conn)
				conn.Release()
			}
		})
	}
}

// BenchmarkWithLock is an uncontended locked section through the library.
func BenchmarkWithLock(b *testing.B) {
	pool := benchPool(b, 2)
	fn := func(context.Context) (int, error) { return 1, nil }
	cases := []struct {
		name string
		opts []advisorylock.Option
	}{
		{"session", nil},
		{"transaction", []advisorylock.Option{advisorylock.TransactionScope()}},
		{"session-timeout", []advisorylock.Option{advisorylock.WithTimeout(5 * time.Second)}},
		{"session-fencing", []advisorylock.Option{advisorylock.WithFencing()}},
		{"transaction-fencing", []advisorylock.Option{advisorylock.TransactionScope(), advisorylock.WithFencing()}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			m := advisorylock.NewWithKey(pool, benchKey, c.opts...)
			ctx := context.Background()
			// The first fenced acquisition of a process checks (and creates)
			// the sequence: not part of the cycle.
			if _, err := advisorylock.WithLock(ctx, m, fn); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := advisorylock.WithLock(ctx, m, fn); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkManyKeys is lock/unlock cycles on 1000 distinct keys from 16
// goroutines sharing a pool of 8: the raw-pgx floor against the library, on
// lock sessions (the default) and on pinned connections (PinConnection).
func BenchmarkManyKeys(b *testing.B) {
	pool := benchPool(b, 8)
	mutexes := make([]*advisorylock.Mutex, 1000)
	for i := range mutexes {
		mutexes[i] = advisorylock.NewWithKey(pool, advisorylock.Int64Key(int64(i)))
	}
	run := func(b *testing.B, cycle func(ctx context.Context, i int) error) {
		b.ReportAllocs()
		b.SetParallelism(8) // 16 goroutines on 2 cores
		var next atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			for pb.Next() {
				if err := cycle(ctx, int(next.Add(7919)%1000)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.Run("floor", func(b *testing.B) {
		run(b, func(ctx context.Context, i int) error {
			conn, err := pool.Acquire(ctx)
			if err != nil {
				return err
			}
			defer conn.Release()
			if _, err := conn.Exec(ctx, "select pg_advisory_lock($1)", int64(i)); err != nil {
				return err
			}
			_, err = conn.Exec(ctx, "select pg_advisory_unlock($1)", int64(i))
			return err
		})
	})
	b.Run("library", func(b *testing.B) {
		run(b, func(ctx context.Context, i int) error {
			l, err := mutexes[i].Lock(ctx)
			if err != nil {
				return err
			}
			return l.Unlock(ctx)
		})
	})
	// Pinned, the 16 goroutines take turns on the pool's 8 connections;
	// on lock sessions (above) they share the round trips of two server
	// sessions.
	pinned := make([]*advisorylock.Mutex, len(mutexes))
	for i := range pinned {
		pinned[i] = advisorylock.NewWithKey(pool, advisorylock.Int64Key(int64(i)), advisorylock.PinConnection())
	}
	b.Run("pinned", func(b *testing.B) {
		run(b, func(ctx context.Context, i int) error {
			l, err := pinned[i].Lock(ctx)
			if err != nil {
				return err
			}
			return l.Unlock(ctx)
		})
	})
}

// BenchmarkInterleaved times an uncontended session-scoped Lock and Unlock
// against raw pgx doing the same on a pinned connection (the floor: two round
// trips), call by call in one run, so that the machine's drifting load
// weighs on both alike: the figure that matters is library/floor. The
// library's lock rides on a lock session (the default) and, for comparison,
// on a pinned pooled connection (PinConnection); and, in a run of their own,
// with a fencing token (WithFencing) on each.
func BenchmarkInterleaved(b *testing.B) {
	pool := benchPool(b, 4)
	ctx := context.Background()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Release()
	k1, k2, _ := advisorylock.KeyFromName("floor").Pair()
	library := advisorylock.New(pool, "library")
	pinned := advisorylock.New(pool, "pinned", advisorylock.PinConnection())
	fencing := advisorylock.New(pool, "fencing", advisorylock.WithFencing())
	pinnedFencing := advisorylock.New(pool, "pinned-fencing", advisorylock.PinConnection(), advisorylock.WithFencing())
	lockUnlock := func(m *advisorylock.Mutex) func() error {
		return func() error {
			l, err := m.Lock(ctx)
			if err != nil {
				return err
			}
			return l.Unlock(ctx)
		}
	}
	// The first fenced acquisition checks (and creates) the sequence.
	for _, m := range []*advisorylock.Mutex{fencing, pinnedFencing} {
		if err := lockUnlock(m)(); err != nil {
			b.Fatal(err)
		}
	}
	floor := interleave.Case{Name: "floor", Call: func() error {
		if _, err := conn.Exec(ctx, "select pg_advisory_lock($1,$2)", k1, k2); err != nil {
			return err
		}
		_, err := conn.Exec(ctx, "select pg_advisory_unlock($1,$2)", k1, k2)
		return err
	}}
	// Apart: a fenced acquisition's nextval logs to the WAL every 32
	// values, a flush at commit whose after-effects would fall on the
	// neighbouring calls of the unfenced cases.
	b.Run("plain", func(b *testing.B) {
		b.ReportAllocs()
		interleave.Run(b, []interleave.Case{floor,
			{Name: "library", Call: lockUnlock(library)},
			{Name: "pinned", Call: lockUnlock(pinned)},
		})
	})
	b.Run("fencing", func(b *testing.B) {
		b.ReportAllocs()
		interleave.Run(b, []interleave.Case{floor,
			{Name: "fencing", Call: lockUnlock(fencing)},
			{Name: "pinned-fencing", Call: lockUnlock(pinnedFencing)},
		})
	})
}
