package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// probeTimeout bounds one `select 1` probe through a contended pool; a probe
// that runs out counts as a timeout.
const probeTimeout = 2 * time.Second

// coalesceResult is one contender's behaviour with many goroutines of one
// process on one key.
type coalesceResult struct {
	c            contender
	perSec       float64   // lock/unlock cycles per second on the key
	maxWaiting   int       // most ungranted requests for the key seen in pg_locks
	maxAcquired  int32     // most pool connections seen in use (probe included)
	idle, busy   []float64 // probe latencies (ns), before and during contention
	timeouts     int       // probes that ran out during contention
	samplesTaken int       // pg_locks samples taken
}

// waitersSQL counts the granted and ungranted requests for one bigint
// advisory key of the current database. A bigint key shows as classid = its
// high 32 bits, objid = its low 32 bits, objsubid = 1.
const waitersSQL = `select count(*) filter (where not granted)::int, count(*) filter (where granted)::int
from pg_catalog.pg_locks
where locktype = 'advisory' and objsubid = 1 and classid::int8 = $1 and objid::int8 = $2
  and database = (select oid from pg_catalog.pg_database where datname = pg_catalog.current_database())`

// runCoalesce runs, for raw pgx and for the library, cfg.coalesceGoroutines
// goroutines locking one key with an empty critical section, on one pool of
// cfg.coalescePool connections, for cfg.coalesceTime. Meanwhile a connection
// outside the pool samples pg_locks for requests waiting on the key, and an
// unrelated `select 1` goes through the same pool every 10ms; its latency is
// compared with the same probe on the idle pool just before.
func (b *bench) runCoalesce(ctx context.Context) ([]*coalesceResult, error) {
	opctx := context.WithoutCancel(ctx)
	mon, err := b.conn(opctx, "monitor")
	if err != nil {
		return nil, err
	}
	b.defer_(func() { mon.Close(context.Background()) })
	var res []*coalesceResult
	for i, c := range b.contenders() {
		if c.id != "raw" && c.id != "lib" {
			continue
		}
		b.p.say("coalescing: %s (%d goroutines on one key, pool of %d, %v)", c.id, b.cfg.coalesceGoroutines, b.cfg.coalescePool, b.cfg.coalesceTime)
		l, err := c.newLocker(opctx, b, b.cfg.coalescePool)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.name, err)
		}
		r, err := b.coalesceOne(ctx, mon, l, b.key(300+i))
		l.close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.name, err)
		}
		r.c = c
		res = append(res, r)
	}
	return res, nil
}

func (b *bench) coalesceOne(ctx context.Context, mon *pgx.Conn, l *locker, key int64) (*coalesceResult, error) {
	opctx := context.WithoutCancel(ctx)
	res := &coalesceResult{}
	pool := l.pool
	probe := func() (time.Duration, error) {
		pctx, cancel := context.WithTimeout(opctx, probeTimeout)
		defer cancel()
		t0 := time.Now()
		var n int
		err := pool.QueryRow(pctx, sqlSelect1).Scan(&n)
		return time.Since(t0), err
	}
	for range 100 {
		d, err := probe()
		if err != nil {
			return nil, err
		}
		res.idle = append(res.idle, float64(d.Nanoseconds()))
		time.Sleep(5 * time.Millisecond)
	}

	run := l.bind(key)
	stopCtx, stop := context.WithCancel(opctx)
	defer stop()
	stopOnInterrupt := context.AfterFunc(ctx, stop)
	defer stopOnInterrupt()
	deadline := time.Now().Add(b.cfg.coalesceTime)
	timer := time.AfterFunc(b.cfg.coalesceTime, stop)
	defer timer.Stop()

	var (
		cycles atomic.Int64
		wg     sync.WaitGroup
		errs   = make([]error, b.cfg.coalesceGoroutines)
	)
	for g := range b.cfg.coalesceGoroutines {
		wg.Go(func() {
			for stopCtx.Err() == nil {
				if err := run(opctx, func() {}); err != nil {
					errs[g] = err
					stop()
					return
				}
				if time.Now().Before(deadline) {
					cycles.Add(1)
				}
			}
		})
	}

	// The probe and the monitor run during the contended phase only.
	var side sync.WaitGroup
	var probeErr, monErr error
	side.Go(func() {
		probeErr = every(stopCtx, 10*time.Millisecond, func() error {
			d, err := probe()
			switch {
			case stopCtx.Err() != nil:
				// cut by the end of the phase: not a figure
			case errors.Is(err, context.DeadlineExceeded):
				res.timeouts++
			case err != nil:
				return err
			default:
				res.busy = append(res.busy, float64(d.Nanoseconds()))
			}
			return nil
		})
	})
	hi, lo := int64(uint32(key>>32)), int64(uint32(key))
	side.Go(func() {
		monErr = every(stopCtx, 5*time.Millisecond, func() error {
			var waiting, granted int
			if err := mon.QueryRow(opctx, waitersSQL, hi, lo).Scan(&waiting, &granted); err != nil {
				return err
			}
			res.samplesTaken++
			res.maxWaiting = max(res.maxWaiting, waiting)
			res.maxAcquired = max(res.maxAcquired, poolInUse(pool))
			return nil
		})
	})
	wg.Wait()
	side.Wait()
	res.perSec = float64(cycles.Load()) / b.cfg.coalesceTime.Seconds()
	return res, errors.Join(errors.Join(errs...), probeErr, monErr)
}

// every calls f every d until ctx is done or f fails, and returns f's error.
func every(ctx context.Context, d time.Duration, f func() error) error {
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if err := f(); err != nil {
			return err
		}
	}
}

func poolInUse(p *pgxpool.Pool) int32 { return p.Stat().AcquiredConns() }
