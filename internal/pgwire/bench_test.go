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
// queries on a connection of its own. Sequentially, the session adds a
// goroutine hand-off per query to the floor's round trip; with keepalive on,
// a write deadline per write too. In parallel, 16 goroutines share one
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
