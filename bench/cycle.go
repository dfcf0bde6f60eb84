package main

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
)

// A cycleCase is one row of the uncontended measurement: op is one complete
// lock/unlock cycle (or, for references, the unit of work named).
type cycleCase struct {
	name  string
	scope string // the floor a row is compared with: "session" or "transaction"
	floor bool   // the floor of its scope
	ref   bool   // a reference row (not a locker someone would use as is)
	setup func(ctx context.Context, b *bench, key int64) (op func() error, cleanup func(), err error)
}

// cycleResult is a row's figures, one entry per round.
type cycleResult struct {
	c      cycleCase
	ns     []float64 // ns/op
	allocs []float64 // allocs/op
	bytes  []float64 // B/op
	ratio  []float64 // ns/op over the floor's of the same round
}

// cycleCases returns the rows: every contender with an empty critical
// section, plus references (a pinned connection, one round trip) and
// variants of the library's call.
func cycleCases() []cycleCase {
	var cs []cycleCase
	fromContender := func(c contender) cycleCase {
		return cycleCase{
			name: c.name, scope: c.scope, floor: c.id == "raw" || c.id == "raw-tx",
			setup: func(ctx context.Context, b *bench, key int64) (func() error, func(), error) {
				l, err := c.newLocker(ctx, b, 2)
				if err != nil {
					return nil, nil, err
				}
				run := l.bind(key)
				return func() error { return run(ctx, func() {}) }, l.close, nil
			},
		}
	}
	all := contenders()
	byID := map[string]contender{}
	for _, c := range all {
		byID[c.id] = c
	}
	cs = append(cs, fromContender(byID["raw"]), fromContender(byID["raw-tx"]))
	cs = append(cs,
		cycleCase{
			name: "reference: raw pgx on a pinned connection (no Acquire/Release)", scope: "session", ref: true,
			setup: func(ctx context.Context, b *bench, key int64) (func() error, func(), error) {
				return pinned(ctx, b, "pinned", func(conn *pgxpool.Conn) error {
					if _, err := conn.Exec(ctx, sqlLock, key); err != nil {
						return err
					}
					var ok bool
					if err := conn.QueryRow(ctx, sqlUnlock, key).Scan(&ok); err != nil {
						return err
					}
					if !ok {
						return unexpected("pg_advisory_unlock(%d) returned false", key)
					}
					return nil
				})
			},
		},
		cycleCase{
			name: "reference: `select 1` on a pinned connection (one round trip)", scope: "session", ref: true,
			setup: func(ctx context.Context, b *bench, _ int64) (func() error, func(), error) {
				return pinned(ctx, b, "select1", func(conn *pgxpool.Conn) error {
					var n int
					return conn.QueryRow(ctx, sqlSelect1).Scan(&n)
				})
			},
		},
		fromContender(byID["lib"]),
		libVariant("advisorylock: New(pool, name), Lock, Unlock", false,
			func(b *bench, p *pgxpool.Pool, key int64) *advisorylock.Mutex {
				return advisorylock.New(p, b.name(fmt.Sprint("cycle-", key)))
			}),
		libVariant("advisorylock: Lock, Unlock with a cancellable ctx", true,
			func(_ *bench, p *pgxpool.Pool, key int64) *advisorylock.Mutex {
				return advisorylock.NewWithKey(p, advisorylock.Int64Key(key))
			}),
		libVariant("advisorylock: Lock, Unlock with WithTimeout(5s)", false,
			func(_ *bench, p *pgxpool.Pool, key int64) *advisorylock.Mutex {
				return advisorylock.NewWithKey(p, advisorylock.Int64Key(key), advisorylock.WithTimeout(5*time.Second))
			}),
	)
	for _, id := range []string{"lib-pinned", "lib-withlock", "lib-tx", "goose", "migrate"} {
		cs = append(cs, fromContender(byID[id]))
	}
	return cs
}

// libVariant is a Lock/Unlock row of the library with its own Mutex; with
// cancellable, the calls get a context that can be cancelled (never is),
// as a request's context would be.
func libVariant(name string, cancellable bool, mutex func(b *bench, p *pgxpool.Pool, key int64) *advisorylock.Mutex) cycleCase {
	return cycleCase{
		name: name, scope: "session",
		setup: func(ctx context.Context, b *bench, key int64) (func() error, func(), error) {
			pool, err := b.pool(ctx, 2, "lib-variant")
			if err != nil {
				return nil, nil, err
			}
			m := mutex(b, pool, key)
			cctx, cancel := ctx, context.CancelFunc(func() {})
			if cancellable {
				cctx, cancel = context.WithCancel(ctx)
			}
			return func() error {
					l, err := m.Lock(cctx)
					if err != nil {
						return err
					}
					return l.Unlock(cctx)
				}, func() {
					cancel()
					pool.Close()
				}, nil
		},
	}
}

// runCycles measures every case in rounds. In each round every case runs
// one batch of cfg.cycleTime, in an order rotating from round to round, and
// the session floor runs again between every two of them (F A F B F C … F),
// so that each batch is compared with the floor measured just before and
// just after it: the machine's noise drifts, and a ratio to a neighbour
// cancels most of it.
func (b *bench) runCycles(ctx context.Context) ([]*cycleResult, error) {
	var cases []cycleCase
	for _, c := range cycleCases() {
		if b.cfg.runs(c.name, c.floor || strings.Contains(c.name, "select 1")) {
			cases = append(cases, c)
		}
	}
	opctx := context.WithoutCancel(ctx) // the calls' context: never done
	res := make([]*cycleResult, len(cases))
	ops := make([]func() error, len(cases))
	floor := -1
	var others []int
	for i, c := range cases {
		op, cleanup, err := c.setup(opctx, b, b.key(100+i))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.name, err)
		}
		b.defer_(cleanup)
		ops[i], res[i] = op, &cycleResult{c: c}
		if c.floor && c.scope == "session" {
			floor = i
		} else {
			others = append(others, i)
		}
		// Warm up: statement caches, the first allocations.
		for range 50 {
			if err := op(); err != nil {
				return nil, fmt.Errorf("%s: %w", c.name, err)
			}
		}
	}
	measure := func(i int) (float64, error) {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		st, err := batch(ops[i], b.cfg.cycleTime)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", cases[i].name, err)
		}
		n := float64(st.n)
		ns := float64(st.elapsed.Nanoseconds()) / n
		res[i].ns = append(res[i].ns, ns)
		res[i].allocs = append(res[i].allocs, float64(st.mallocs)/n)
		res[i].bytes = append(res[i].bytes, float64(st.bytes)/n)

		return ns, nil
	}
	for r := range b.cfg.cycleRounds {
		b.p.say("uncontended: round %d of %d", r+1, b.cfg.cycleRounds)
		prev, err := measure(floor)
		if err != nil {
			return nil, err
		}
		for k := range others {
			i := others[(k+r)%len(others)]
			ns, err := measure(i)
			if err != nil {
				return nil, err
			}
			next, err := measure(floor)
			if err != nil {
				return nil, err
			}
			res[i].ratio = append(res[i].ratio, ns/((prev+next)/2))
			prev = next
		}
		res[floor].ratio = append(res[floor].ratio, 1)
	}
	// Rows of the other scope are compared with their own floor, round by
	// round, through the session floor both were compared with.
	for _, f := range res {
		if !f.c.floor || f.c.scope == "session" {
			continue
		}
		base := slices.Clone(f.ratio)
		for _, x := range res {
			if x.c.scope == f.c.scope {
				for r := range x.ratio {
					x.ratio[r] /= base[r]
				}
			}
		}
	}
	return res, nil
}

// batchStats is what one batch measured.
type batchStats struct {
	n              int
	elapsed        time.Duration
	mallocs, bytes uint64
}

// batch runs op for at least d and returns how many times it ran, for how
// long, and the allocations meanwhile (the process's: nothing else runs). A garbage collection first, as
// testing.B does, so that no batch pays for the previous one's garbage.
func batch(op func() error, d time.Duration) (batchStats, error) {
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	t0 := time.Now()
	var st batchStats
	for {
		if err := op(); err != nil {
			return st, err
		}
		st.n++
		if st.elapsed = time.Since(t0); st.elapsed >= d {
			break
		}
	}
	runtime.ReadMemStats(&m1)
	st.mallocs, st.bytes = m1.Mallocs-m0.Mallocs, m1.TotalAlloc-m0.TotalAlloc
	return st, nil
}

// pinned sets up a reference cycle: cycle run on one connection of a pool of
// its own, acquired once.
func pinned(ctx context.Context, b *bench, name string, cycle func(*pgxpool.Conn) error) (func() error, func(), error) {
	pool, err := b.pool(ctx, 1, name)
	if err != nil {
		return nil, nil, err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return func() error { return cycle(conn) }, func() {
		conn.Release()
		pool.Close()
	}, nil
}
