package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// tputResult is one contender's throughput, one figure per round.
type tputResult struct {
	c       contender
	perSec  []float64 // completed lock/unlock cycles per second
	skipped string    // why it was not measured, if it was not
}

// runThroughput measures, for each contender, cfg.goroutines goroutines each
// locking and unlocking random keys out of cfg.keys, with an empty critical
// section, on one pool of cfg.poolSize connections, in interleaved rounds of
// cfg.tputTime. A cycle counts when its unlock returned before the round's
// end.
func (b *bench) runThroughput(ctx context.Context) ([]*tputResult, error) {
	opctx := context.WithoutCancel(ctx)
	cs := b.contenders()
	res := make([]*tputResult, len(cs))
	runs := make([][]runFunc, len(cs))
	var active []int
	for i, c := range cs {
		res[i] = &tputResult{c: c}
		if c.fixedKey {
			res[i].skipped = "n/a: one key per driver instance, and each instance pins a connection for its lifetime"
			continue
		}
		l, err := c.newLocker(opctx, b, b.cfg.poolSize)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.name, err)
		}
		b.defer_(l.close)
		for k := range b.cfg.keys {
			runs[i] = append(runs[i], l.bind(b.key(10_000+k)))
		}
		active = append(active, i)
	}
	for r := range b.cfg.tputRounds {
		b.p.say("throughput: round %d of %d (%d goroutines, %d keys, pool of %d, %v each)",
			r+1, b.cfg.tputRounds, b.cfg.goroutines, b.cfg.keys, b.cfg.poolSize, b.cfg.tputTime)
		for k := range active {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			i := active[(k+r)%len(active)]
			n, err := b.throughputRound(ctx, runs[i], cs[i].polls)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", cs[i].name, err)
			}
			res[i].perSec = append(res[i].perSec, float64(n)/b.cfg.tputTime.Seconds())
		}
	}
	return res, nil
}

// throughputRound runs one round and returns the cycles completed in it.
func (b *bench) throughputRound(ctx context.Context, runs []runFunc, polls bool) (int64, error) {
	// A polling locker's calls are cut short at the end (it would sleep on);
	// the others finish their cycle.
	stopCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	lockCtx := context.WithoutCancel(ctx)
	if polls {
		lockCtx = stopCtx
	}
	stopOnInterrupt := context.AfterFunc(ctx, stop)
	defer stopOnInterrupt()
	var (
		done     atomic.Int64
		deadline = time.Now().Add(b.cfg.tputTime)
		wg       sync.WaitGroup
		errs     = make([]error, b.cfg.goroutines)
	)
	timer := time.AfterFunc(b.cfg.tputTime, stop)
	defer timer.Stop()
	for g := range b.cfg.goroutines {
		rng := rand.New(rand.NewPCG(uint64(g), uint64(time.Now().UnixNano())))
		wg.Go(func() {
			for stopCtx.Err() == nil {
				run := runs[rng.IntN(len(runs))]
				if err := run(lockCtx, func() {}); err != nil {
					if stopCtx.Err() != nil && errors.Is(err, context.Canceled) {
						return
					}
					errs[g] = err
					stop()
					return
				}
				if time.Now().Before(deadline) {
					done.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return done.Load(), errors.Join(errs...)
}
