package semaphore_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
	"github.com/advisorylock/advisorylock/semaphore"
)

// benchDB returns a database of the benchmark's own and the median of 200
// `select 1` round trips on it, each after a pause of pause: the unit the
// figures are reported in, measured in the same run. With no pause the round
// trips go back to back, both processes awake; after a pause as long as a
// hold, both sleep first, as in a hand-off, and a round trip costs more.
func benchDB(b *testing.B, pause time.Duration) (dsn string, rtt time.Duration) {
	b.Helper()
	dsn = pgtest.Require(b).CreateDatabase(b)
	pool := pgtest.NewPool(b, dsn)
	ctx := context.Background()
	var xs []time.Duration
	for range 200 {
		if pause > 0 {
			time.Sleep(pause)
		}
		start := time.Now()
		if _, err := pool.Exec(ctx, "select 1"); err != nil {
			b.Fatal(err)
		}
		xs = append(xs, time.Since(start))
	}
	return dsn, median(xs)
}

func median(xs []time.Duration) time.Duration {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkHandoff measures the hand-off of a semaphore's slot from a holder
// to a waiter, next to a Mutex's in the same run: two holders, each on a pool
// of its own (as two processes), pass one slot (or the lock) back and forth,
// each holding it for a millisecond while the other waits. In "semaphore"
// the waiter, heading the queue, waits in the server on that slot; in
// "semaphore-announced" it waits on another slot, held all along by a third
// process, and takes the one passed around after its release is announced. A hand-off is the
// time from the moment the holder calls Unlock to the moment the waiter's
// Lock returns to it, as in the bench module. Reported: its median in round
// trips (rt/handoff, the `select 1` round trip of the same run after a
// millisecond's pause, as processes that slept) and in µs, and the median
// from the moment the unlock was done (a HoldEnd hook, called once the server
// answered the unlock, before the semaphore announces the release) to the
// waiter's Lock returning (rt/from-unlocked).
func BenchmarkHandoff(b *testing.B) {
	dsn, rtt := benchDB(b, time.Millisecond)
	_, b2b := benchDB(b, 0)
	b.Logf("round trip (select 1, median): %v after a 1ms pause, %v back to back", rtt, b2b)
	type locker interface {
		Lock(context.Context) (*advisorylock.Lock, error)
	}
	for _, c := range []struct {
		name string
		new  func(*pgxpool.Pool, advisorylock.Hook) locker
		// held: another process holds a slot, taken first, all along: the
		// head waits in the server on it, and the hand-offs of the other slot
		// go by announcement.
		held bool
	}{
		{"semaphore", func(p *pgxpool.Pool, h advisorylock.Hook) locker {
			return semaphore.New(p, "handoff", 1, semaphore.WithHooks(h))
		}, false},
		{"semaphore-announced", func(p *pgxpool.Pool, h advisorylock.Hook) locker {
			return semaphore.New(p, "handoff-announced", 2, semaphore.WithHooks(h))
		}, true},
		{"mutex", func(p *pgxpool.Pool, h advisorylock.Hook) locker {
			return advisorylock.New(p, "handoff", advisorylock.WithHooks(h))
		}, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			if c.held {
				l, err := semaphore.New(pgtest.NewPool(b, dsn), "handoff-announced", 2).Lock(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				defer l.Unlock(context.Background())
			}
			var mu sync.Mutex
			var handoffs, fromUnlocked []time.Duration
			var releasing time.Time // when the last holder called Unlock
			var unlocked time.Time  // when its unlock was done
			hook := &unlockedHook{at: func(t time.Time) { mu.Lock(); unlocked = t; mu.Unlock() }}
			ls := []locker{c.new(pgtest.NewPool(b, dsn), hook), c.new(pgtest.NewPool(b, dsn), hook)}
			warm := 10 // hand-offs not counted: connections open, statements prepare
			done := make(chan struct{})
			var wg sync.WaitGroup
			for _, l := range ls {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						lk, err := l.Lock(context.Background())
						now := time.Now()
						if err != nil {
							b.Error(err)
							return
						}
						mu.Lock()
						stop := false
						if !releasing.IsZero() {
							if warm > 0 {
								warm--
								if warm == 0 {
									b.ResetTimer()
								}
							} else {
								handoffs = append(handoffs, now.Sub(releasing))
								fromUnlocked = append(fromUnlocked, now.Sub(unlocked))
							}
						}
						if len(handoffs) >= b.N {
							stop = true
						}
						mu.Unlock()
						if !stop {
							time.Sleep(time.Millisecond)
						}
						mu.Lock()
						releasing = time.Now()
						mu.Unlock()
						if err := lk.Unlock(context.Background()); err != nil {
							b.Error(err)
							return
						}
						if stop {
							select {
							case <-done:
							default:
								close(done)
							}
							return
						}
						select {
						case <-done:
							return
						default:
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			if len(handoffs) == 0 {
				return
			}
			m := median(handoffs)
			b.ReportMetric(float64(m)/float64(rtt), "rt/handoff")
			b.ReportMetric(float64(m.Microseconds()), "µs/handoff")
			if c.name != "mutex" { // a Mutex's waiter is granted as the releaser's unlock is
				b.ReportMetric(float64(median(fromUnlocked))/float64(rtt), "rt/from-unlocked")
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkCycle measures an uncontended Lock and Unlock of a semaphore next
// to a Mutex's, on one pool, in back-to-back round trips of the same run
// (rt/op).
func BenchmarkCycle(b *testing.B) {
	dsn, rtt := benchDB(b, 0)
	pool := pgtest.NewPool(b, dsn)
	ctx := context.Background()
	for _, c := range []struct {
		name string
		l    interface {
			Lock(context.Context) (*advisorylock.Lock, error)
		}
	}{
		{"semaphore", semaphore.New(pool, "cycle", 3)},
		{"mutex", advisorylock.New(pool, "cycle")},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				l, err := c.l.Lock(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if err := l.Unlock(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed())/float64(b.N)/float64(rtt), "rt/op")
		})
	}
}

// unlockedHook tells when a lock's unlock is done: HoldEnd is called once
// the server has answered the unlock.
type unlockedHook struct{ at func(time.Time) }

func (h *unlockedHook) AcquireStart(ctx context.Context, _ *advisorylock.Mutex, _ advisorylock.AcquireStartData) context.Context {
	return ctx
}

func (h *unlockedHook) AcquireEnd(context.Context, *advisorylock.Mutex, advisorylock.AcquireEndData) {
}

func (h *unlockedHook) HoldStart(ctx context.Context, _ *advisorylock.Lock, _ advisorylock.HoldStartData) context.Context {
	return ctx
}

func (h *unlockedHook) HoldEnd(context.Context, *advisorylock.Lock, advisorylock.HoldEndData) {
	h.at(time.Now())
}
