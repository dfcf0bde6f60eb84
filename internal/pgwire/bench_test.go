package pgwire_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/advisorylock/advisorylock/internal/pgwire"
)

// parallelism is the number of goroutines of the parallel benchmarks.
const parallelism = 16

// BenchmarkDo measures one lock cycle, a try-lock and its unlock (two
// queries), on a Session against the floor: pgconn's Exec of the same
// queries on a connection of its own. Sequentially, each caller reads its
// own answer, as the floor does; with keepalive on, a write deadline per
// write is added. In parallel, 16 goroutines share one
// session, against 16 goroutines with a connection each (floor), and against
// 16 goroutines taking turns on one connection (one-conn: what sharing a
// session costs without pipelining).
func BenchmarkDo(b *testing.B) {
	_, cfg := testDB(b)
	ctx := context.Background()
	var keys atomic.Int32
	cycle := func() (lock, unlock string) {
		k := keys.Add(1)
		return fmt.Sprintf("select pg_catalog.pg_try_advisory_lock(1,%d)", k),
			fmt.Sprintf("select 1 where pg_catalog.pg_advisory_unlock(1,%d)", k)
	}
	exec := func(conn *pgconn.PgConn, sql string) error {
		results, err := conn.Exec(ctx, sql).ReadAll()
		if err != nil {
			return err
		}
		if len(results) != 1 || len(results[0].Rows) != 1 {
			return fmt.Errorf("%s: unexpected %v", sql, results)
		}
		return nil
	}
	do := func(s *pgwire.Session, sql string) error {
		res, err := s.Do(ctx, sql)
		if err == nil && res.Err != nil {
			err = res.Err
		}
		if err == nil && len(res.Rows) != 1 {
			err = fmt.Errorf("%s: %d rows; want 1", sql, len(res.Rows))
		}
		return err
	}
	// Connections are opened once: RunParallel calls its function for each
	// round.
	conns := make(chan *pgconn.PgConn, parallelism)
	for range parallelism {
		conns <- connectPgconn(b, cfg)
	}
	one := <-conns
	conns <- one
	var oneMu sync.Mutex
	s := connect(b, cfg, pgwire.Options{})
	withKeepalive := connect(b, cfg, pgwire.Options{Keepalive: time.Minute})
	// Goroutines of RunParallel: parallelism in all.
	procs := (parallelism + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0)

	b.Run("floor/sequential", func(b *testing.B) {
		lock, unlock := cycle()
		b.ReportAllocs()
		for b.Loop() {
			if err := exec(one, lock); err != nil {
				b.Fatal(err)
			}
			if err := exec(one, unlock); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, tt := range []struct {
		name string
		s    *pgwire.Session
	}{{"session/sequential", s}, {"session+keepalive/sequential", withKeepalive}} {
		b.Run(tt.name, func(b *testing.B) {
			lock, unlock := cycle()
			b.ReportAllocs()
			for b.Loop() {
				if err := do(tt.s, lock); err != nil {
					b.Fatal(err)
				}
				if err := do(tt.s, unlock); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run(fmt.Sprintf("floor/parallel%d", parallelism), func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(procs)
		b.RunParallel(func(pb *testing.PB) {
			conn := <-conns
			defer func() { conns <- conn }()
			lock, unlock := cycle()
			for pb.Next() {
				if err := exec(conn, lock); err != nil {
					b.Error(err)
					return
				}
				if err := exec(conn, unlock); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run(fmt.Sprintf("one-conn/parallel%d", parallelism), func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(procs)
		b.RunParallel(func(pb *testing.PB) {
			lock, unlock := cycle()
			for pb.Next() {
				oneMu.Lock()
				err := exec(one, lock)
				oneMu.Unlock()
				if err == nil {
					oneMu.Lock()
					err = exec(one, unlock)
					oneMu.Unlock()
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run(fmt.Sprintf("session/parallel%d", parallelism), func(b *testing.B) {
		b.ReportAllocs()
		writes := pgwire.Writes(s)
		defer func() {
			b.ReportMetric(float64(pgwire.Writes(s)-writes)/float64(2*b.N), "writes/query")
		}()
		b.SetParallelism(procs)
		b.RunParallel(func(pb *testing.PB) {
			lock, unlock := cycle()
			for pb.Next() {
				if err := do(s, lock); err != nil {
					b.Error(err)
					return
				}
				if err := do(s, unlock); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})

	// The figures above drift with the machine's load, which changes between
	// sub-benchmarks. The paired ones alternate floor and session within one
	// run, in short turns, and report the ratio of their times.
	b.Run("paired/sequential", func(b *testing.B) {
		lockF, unlockF := cycle()
		lockS, unlockS := cycle()
		var floor, session time.Duration
		i := 0
		for b.Loop() {
			for turn := range 2 {
				start := time.Now()
				var err error
				if (i+turn)%2 == 0 {
					if err = exec(one, lockF); err == nil {
						err = exec(one, unlockF)
					}
					floor += time.Since(start)
				} else {
					if err = do(s, lockS); err == nil {
						err = do(s, unlockS)
					}
					session += time.Since(start)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			i++
		}
		reportPair(b, floor, session, b.N)
	})
	b.Run(fmt.Sprintf("paired/parallel%d", parallelism), func(b *testing.B) {
		// Each turn: parallelism goroutines run cycles cycles each.
		const cycles = 25
		floorConns := make([]*pgconn.PgConn, 0, parallelism)
		for range parallelism {
			c := <-conns
			defer func() { conns <- c }()
			floorConns = append(floorConns, c)
		}
		turn := func(work func(g int) error) time.Duration {
			var wg sync.WaitGroup
			start := time.Now()
			for g := range parallelism {
				wg.Go(func() {
					for range cycles {
						if err := work(g); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			return time.Since(start)
		}
		keysF := make([][2]string, parallelism)
		keysS := make([][2]string, parallelism)
		for g := range parallelism {
			keysF[g][0], keysF[g][1] = cycle()
			keysS[g][0], keysS[g][1] = cycle()
		}
		floorWork := func(g int) error {
			if err := exec(floorConns[g], keysF[g][0]); err != nil {
				return err
			}
			return exec(floorConns[g], keysF[g][1])
		}
		sessionWork := func(g int) error {
			if err := do(s, keysS[g][0]); err != nil {
				return err
			}
			return do(s, keysS[g][1])
		}
		var floor, session time.Duration
		i := 0
		for b.Loop() {
			if i%2 == 0 {
				floor += turn(floorWork)
				session += turn(sessionWork)
			} else {
				session += turn(sessionWork)
				floor += turn(floorWork)
			}
			i++
		}
		reportPair(b, floor, session, b.N*parallelism*cycles)
	})
}

// connectPgconn opens a pgconn connection closed when b ends.
func connectPgconn(b *testing.B, cfg *pgconn.Config) *pgconn.PgConn {
	b.Helper()
	conn, err := pgconn.ConnectConfig(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// reportPair reports the time per lock cycle of the floor and the session,
// and their ratio.
func reportPair(b *testing.B, floor, session time.Duration, n int) {
	b.ReportMetric(0, "ns/op") // an op here is a turn of both: meaningless
	b.ReportMetric(float64(floor.Nanoseconds())/float64(n), "floor-ns/cycle")
	b.ReportMetric(float64(session.Nanoseconds())/float64(n), "session-ns/cycle")
	b.ReportMetric(float64(session)/float64(floor), "session/floor")
}
