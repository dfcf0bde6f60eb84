package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// The hand-off measurement: cfg.holders holders, each with connections of
// its own (its own pool, as separate processes would have), pass one lock
// around. A hand-off is the time from the moment the holder about to release
// calls its unlock (taken just before the call) to the moment the next
// holder's lock call returns to it (taken first thing inside the lock). It
// includes the unlock's trip to the server, the server waking the next
// waiter, the grant's trip back and the next locker's own work before it
// returns; for a polling locker, also the wait for its next poll.
//
// The holders keep a baton order: after releasing, a holder waits until some
// other holder has taken the lock before it asks again. So at every release
// the others are already waiting (holding for cfg.hold gives them time to
// queue), and a releaser never takes the lock straight back, which a polling
// locker would otherwise do almost every time.

// hold is one holding of the lock.
type hold struct {
	holder   int
	acquired time.Time // when the lock call returned to the holder
	released time.Time // just before the unlock call
}

// ring coordinates the holders of one round.
type ring struct {
	mu       sync.Mutex
	cond     sync.Cond
	holds    []hold
	holding  bool
	overlaps int       // holds that began while another was on: must stay 0
	stopped  time.Time // zero while running
	limit    int       // stop after this many holds; 0: no limit
	onStop   func()
}

func newRing(limit int, onStop func()) *ring {
	r := &ring{limit: limit, onStop: onStop}
	r.cond.L = &r.mu
	return r
}

// acquired records that holder got the lock and returns the hold's index.
func (r *ring) acquired(holder int) int {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.holding {
		r.overlaps++
	}
	r.holding = true
	r.holds = append(r.holds, hold{holder: holder, acquired: now})
	if r.limit > 0 && len(r.holds) >= r.limit {
		r.stopLocked()
	}
	r.cond.Broadcast()
	return len(r.holds) - 1
}

// releasing records that hold i is about to be released.
func (r *ring) releasing(i int) {
	r.mu.Lock()
	r.holding = false
	r.holds[i].released = time.Now()
	r.mu.Unlock()
}

// next waits until a hold after i has begun, or the round is stopped; it
// reports whether to go on.
func (r *ring) next(i int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.stopped.IsZero() && len(r.holds) == i+1 {
		r.cond.Wait()
	}
	return r.stopped.IsZero()
}

func (r *ring) running() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopped.IsZero()
}

func (r *ring) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopLocked()
}

func (r *ring) stopLocked() {
	if !r.stopped.IsZero() {
		return
	}
	r.stopped = time.Now()
	r.cond.Broadcast()
	if r.onStop != nil {
		r.onStop()
	}
}

// handoffs returns the hand-off times of the holds that began before the
// stop, skipping the first skip holds (the start, when not everyone queues
// yet).
func handoffs(holds []hold, stopped time.Time, skip int) []float64 {
	holds = slices.Clone(holds)
	slices.SortFunc(holds, func(a, b hold) int { return a.acquired.Compare(b.acquired) })
	var out []float64
	for i := max(skip, 1); i < len(holds); i++ {
		prev, cur := holds[i-1], holds[i]
		if cur.acquired.After(stopped) || prev.released.IsZero() || prev.holder == cur.holder {
			continue
		}
		out = append(out, float64(cur.acquired.Sub(prev.released).Nanoseconds()))
	}
	return out
}

// handoffResult is one contender's hand-offs, pooled over its rounds.
type handoffResult struct {
	c        contender
	variant  string    // how the holds differ from the other rows', if they do
	samples  []float64 // ns
	holds    int
	overlaps int
	elapsed  time.Duration // time spent in rounds
}

// handoffReport is the hand-off measurement's findings.
type handoffReport struct {
	rtt     []float64 // `select 1` round trips, back to back (ns)
	rttIdle []float64 // the same, each after an idle pause as long as a hold
	results []*handoffResult
}

// runHandoffs measures every contender's hand-off, the blocking ones in
// interleaved rounds, the polling one on its own budget; and the loopback
// round trip before each round and at the end.
func (b *bench) runHandoffs(ctx context.Context) (*handoffReport, error) {
	opctx := context.WithoutCancel(ctx)
	rttPool, err := b.pool(opctx, 1, "rtt")
	if err != nil {
		return nil, err
	}
	b.defer_(rttPool.Close)
	rttConn, err := rttPool.Acquire(opctx)
	if err != nil {
		return nil, err
	}
	b.defer_(rttConn.Release)
	var rtt, rttIdle []float64
	// Back to back, the round trip of a hot connection; after an idle pause
	// as long as a hold, that of a connection whose processes were asleep,
	// as every hand-off's are.
	measureRTT := func() error {
		for i := range 400 {
			if i >= 300 {
				time.Sleep(max(b.cfg.hold, time.Millisecond))
			}
			t0 := time.Now()
			var n int
			if err := rttConn.QueryRow(opctx, sqlSelect1).Scan(&n); err != nil {
				return err
			}
			d := float64(time.Since(t0).Nanoseconds())
			if i < 300 {
				rtt = append(rtt, d)
			} else {
				rttIdle = append(rttIdle, d)
			}
		}
		return nil
	}

	cs := b.contenders()
	res := make([]*handoffResult, len(cs))
	hs := make([][]runFunc, len(cs))
	for i, c := range cs {
		res[i] = &handoffResult{c: c}
		key := b.key(200 + i)
		for range b.cfg.holders {
			l, err := c.newLocker(opctx, b, 1)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", c.name, err)
			}
			b.defer_(l.close)
			run := l.bind(key)
			hs[i] = append(hs[i], run)
			// Warm up, alone: connection, statement cache.
			for range 3 {
				if err := run(opctx, func() {}); err != nil {
					return nil, fmt.Errorf("%s: %w", c.name, err)
				}
			}
		}
	}
	fixedHold := func() time.Duration { return b.cfg.hold }
	extra := map[int]*handoffResult{}
	var blocking []int
	for i, c := range cs {
		if !c.polls {
			blocking = append(blocking, i)
		}
	}
	for r := range b.cfg.handoffRounds {
		if err := measureRTT(); err != nil {
			return nil, err
		}
		b.p.say("hand-off: round %d of %d (%d holders, %v each)", r+1, b.cfg.handoffRounds, b.cfg.holders, b.cfg.handoffTime)
		for k := range blocking {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			i := blocking[(k+r)%len(blocking)]
			if err := b.handoffRound(ctx, hs[i], res[i], fixedHold, b.cfg.handoffTime, 0); err != nil {
				return nil, fmt.Errorf("%s: %w", cs[i].name, err)
			}
		}
	}
	for i, c := range cs {
		if !c.polls {
			continue
		}
		// Twice: with the same holds as the others, and with holds spread
		// over a poll interval, which puts the pollers' phases at random
		// relative to the releases, as real work of any length would.
		randomHold := *res[i]
		randomHold.variant = fmt.Sprintf(", holds uniform in [0, %ds)", gooseInterval)
		for _, rr := range []*handoffResult{res[i], &randomHold} {
			holdFor := func() time.Duration { return b.cfg.hold }
			if rr.variant != "" {
				holdFor = func() time.Duration { return rand.N(time.Duration(gooseInterval) * time.Second) }
			}
			b.p.say("hand-off: %s%s, until %d hand-offs or %v", c.id, rr.variant, b.cfg.pollHandoffs, b.cfg.pollTime)
			// The first hold is not a hand-off: pollHandoffs+1 holds give
			// pollHandoffs hand-offs.
			if err := b.handoffRound(ctx, hs[i], rr, holdFor, b.cfg.pollTime, b.cfg.pollHandoffs+1); err != nil {
				return nil, fmt.Errorf("%s: %w", c.name, err)
			}
		}
		extra[i] = &randomHold
	}
	if err := measureRTT(); err != nil {
		return nil, err
	}
	var out []*handoffResult
	for i, r := range res {
		out = append(out, r)
		if e := extra[i]; e != nil {
			out = append(out, e)
		}
	}
	return &handoffReport{rtt: rtt, rttIdle: rttIdle, results: out}, nil
}

// handoffSkip is how many holds at the start of a blocking locker's round
// are not counted: the start, before every holder has queued. A polling
// locker's hand-offs are too slow, and too few, for any to be thrown away.
const handoffSkip = 3

// handoffRound runs the holders for d, or until limit holds (0: no limit),
// and adds the round's hand-offs to res.
func (b *bench) handoffRound(ctx context.Context, hs []runFunc, res *handoffResult, holdFor func() time.Duration, d time.Duration, limit int) error {
	// The lock calls run on a context that is never done (blocking lockers
	// drain by themselves once the round stops); a polling locker's is
	// cancelled at the stop, since it would otherwise poll on.
	opctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	lockCtx := context.WithoutCancel(ctx)
	if res.c.polls {
		lockCtx = opctx
	}
	r := newRing(limit, cancel)
	timer := time.AfterFunc(d, r.stop)
	defer timer.Stop()
	stopOnInterrupt := context.AfterFunc(ctx, r.stop)
	defer stopOnInterrupt()

	t0 := time.Now()
	errs := make([]error, len(hs))
	var wg sync.WaitGroup
	for id, h := range hs {
		wg.Go(func() {
			for r.running() {
				var i int
				err := h(lockCtx, func() {
					i = r.acquired(id)
					if hold := holdFor(); hold > 0 {
						time.Sleep(hold)
					}
					r.releasing(i)
				})
				if err != nil {
					if !r.running() && errors.Is(err, context.Canceled) {
						return // a poller stopped at the end of the round
					}
					errs[id] = err
					r.stop()
					return
				}
				if !r.next(i) {
					return
				}
			}
		})
	}
	wg.Wait()
	res.elapsed += time.Since(t0)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	skip := handoffSkip
	if res.c.polls {
		skip = 1
	}
	res.samples = append(res.samples, handoffs(r.holds, r.stopped, skip)...)
	res.holds += len(r.holds)
	res.overlaps += r.overlaps
	if r.overlaps > 0 {
		return fmt.Errorf("%d holds overlapped another: the lock did not exclude", r.overlaps)
	}
	return nil
}
