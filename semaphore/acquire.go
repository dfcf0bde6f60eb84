package semaphore

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/advisorylock/advisorylock"
)

// Lock acquires a slot, blocking until one is free and the waiters that came
// before have theirs, the [WithTimeout] bound passes or ctx is done. The wait
// happens in the server: in its queue for the queue key, then, at the head of
// the queue, on the slot held longest and for the release of another, which
// the releasing process announces (see the package documentation); no waiter
// polls, but the head looks at the slots once per recheck interval
// ([WithRecheck]). It returns the slot's
// Lock: release it with its Unlock, which also announces the release to the
// waiters (two round trips), and watch it with Done and Err as any Lock. On
// failure it holds nothing and returns an error matching
// context.DeadlineExceeded, context.Canceled, [advisorylock.ErrStandby],
// [advisorylock.ErrPooler] or [advisorylock.ErrInvalidArgument], or the
// driver's error.
func (s *Semaphore) Lock(ctx context.Context) (*advisorylock.Lock, error) {
	return s.acquire(ctx, false)
}

// TryLock acquires a slot if one is free and nobody waits for one, without
// waiting: two round trips, one to look at the slots and one to take a free
// one. Otherwise it fails with an error matching [advisorylock.ErrLocked].
// Other failures are reported as by Lock.
func (s *Semaphore) TryLock(ctx context.Context) (*advisorylock.Lock, error) {
	return s.acquire(ctx, true)
}

var _ advisorylock.Locker = (*Semaphore)(nil)

// acquisition is one Lock or TryLock, as the slots' hooks see it: a slot's
// TryLock or Lock runs on a context carrying it (acquisitionContext), so that
// the semaphore reports one acquisition, its own, whichever slots it tried.
// The head may win two slots at once (one it took after an announcement, one
// its wait in the server was granted): the first won is the acquisition's;
// the other is released unseen by the hooks.
type acquisition struct {
	caller context.Context // the caller's context: the hold derives from it
	actx   context.Context // what the hooks' AcquireStart returned, else caller
	start  time.Time

	mu       sync.Mutex
	won      *advisorylock.Lock // the first slot won
	reported bool               // the hooks' AcquireEnd has been called
	ended    bool               // the acquisition returned: a slot won now is not its
}

// win records that l was won, and reports whether it is the acquisition's
// slot (the first won, before the acquisition ended).
func (a *acquisition) win(l *advisorylock.Lock) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.won == nil && !a.ended {
		a.won = l
		return true
	}
	return false
}

// winner returns the acquisition's slot, or nil.
func (a *acquisition) winner() *advisorylock.Lock {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.won
}

// end records that the acquisition returned, and reports whether the hooks'
// AcquireEnd has been called.
func (a *acquisition) end() (reported bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ended = true
	return a.reported
}

// acquisitionContext is a context that carries an acquisition.
type acquisitionContext struct {
	context.Context
	a *acquisition
}

type acquisitionKey struct{}

func (c *acquisitionContext) Value(key any) any {
	if key == (acquisitionKey{}) {
		return c.a
	}
	return c.Context.Value(key)
}

// acquisitionOf returns the acquisition ctx carries, or nil.
func acquisitionOf(ctx context.Context) *acquisition {
	a, _ := ctx.Value(acquisitionKey{}).(*acquisition)
	return a
}

// acquire is Lock and TryLock: validation, hooks, then the look at the
// slots, a free one taken, and otherwise the queue.
func (s *Semaphore) acquire(ctx context.Context, try bool) (l *advisorylock.Lock, err error) {
	op := "lock"
	if try {
		op = "trylock"
	}
	if err := s.check(op); err != nil {
		return nil, err
	}
	a := &acquisition{caller: ctx, actx: ctx, start: time.Now()}
	bound := s.bound(ctx, a.start)
	if s.hooks != nil {
		a.actx = s.hooks.AcquireStart(ctx, s.queue, advisorylock.AcquireStartData{Try: try, Timeout: bound})
	}
	defer func() {
		if !a.end() && s.hooks != nil {
			s.hooks.AcquireEnd(a.actx, s.queue, advisorylock.AcquireEndData{
				Outcome: outcomeOf(err), Wait: time.Since(a.start), Lock: l, Err: err})
		}
	}()
	if err := ctx.Err(); err != nil {
		return nil, s.errorf(op, err)
	}
	if bound < 0 {
		return nil, s.errorf(op, context.DeadlineExceeded)
	}
	var dl time.Time
	opctx := a.actx
	if bound > 0 {
		dl = a.start.Add(bound)
		var cancel context.CancelFunc
		opctx, cancel = context.WithDeadline(opctx, dl)
		defer cancel()
	}
	l, err = s.take(opctx, a, dl, try)
	if err != nil {
		return nil, s.relabel(op, err)
	}
	return l, nil
}

// take looks at the slots and takes a free one, unless others wait for one;
// otherwise, unless try is set, it queues.
func (s *Semaphore) take(ctx context.Context, a *acquisition, dl time.Time, try bool) (*advisorylock.Lock, error) {
	var text string
	if err := s.pool.QueryRow(ctx, s.sql.look).Scan(&text); err != nil {
		return nil, err
	}
	v, err := parseLook(text, s.base, s.n)
	if err != nil {
		return nil, err
	}
	if free := v.free; !v.queued && len(free) > 0 {
		// Start at a slot of its own, so that the acquisitions that look at
		// once do not all try the same slot first.
		first := int(s.next.Add(1) % uint32(len(free)))
		for k := range free {
			l, err := s.trySlot(ctx, a, free[(first+k)%len(free)])
			if err == nil {
				return l, nil
			}
			if !errors.Is(err, advisorylock.ErrLocked) {
				return nil, err
			}
		}
	}
	if try {
		return nil, advisorylock.ErrLocked
	}
	return s.wait(ctx, a, dl)
}

// trySlot tries slot i, without waiting.
func (s *Semaphore) trySlot(ctx context.Context, a *acquisition, i int) (*advisorylock.Lock, error) {
	return s.slots[i].TryLock(&acquisitionContext{Context: ctx, a: a})
}

// wait queues, in this process then in the server, and heads the queue until
// it has a slot. The head gives the queue key up in the background once it
// has one, so that the slot's holder does not wait for it.
func (s *Semaphore) wait(ctx context.Context, a *acquisition, dl time.Time) (*advisorylock.Lock, error) {
	q, err := enterQueue(ctx, queueID{pool: s.pool, base: s.base}, dl)
	if err != nil {
		return nil, err
	}
	defer q.leave()
	for {
		h, v, err := s.takeQueue(ctx, dl)
		if err != nil {
			return nil, err
		}
		l, err := h.serveOrLeave(ctx, a, dl, v)
		switch {
		case err == nil:
			return l, nil
		case !errors.Is(err, errHeadLost):
			return nil, err
		}
		// The head's session ended (terminated, or its lease ran out while
		// the process was stalled): queue again.
	}
}

// spare opens, in the background, connections of the pool for the head's
// wait on a slot and for a slot announced, when the pool has fewer than two
// idle and room for more: otherwise the pool would open them in the middle
// of the hand-off (a connection's start-up costs several round trips, more
// with SCRAM). It returns at once; the connections go back to the pool idle.
//
// Each connection is opened by a goroutine of its own, which holds no other
// while it waits for the pool, and gives up after spareTimeout: a spare must
// never keep the head from the connection it needs.
func (s *Semaphore) spare(ctx context.Context) {
	st := s.pool.Stat()
	for range min(2-int(st.IdleConns()), int(st.MaxConns()-st.TotalConns())) {
		go func() {
			ctx, cancel := context.WithTimeout(ctx, spareTimeout)
			defer cancel()
			if c, err := s.pool.Acquire(ctx); err == nil {
				c.Release()
			}
		}()
	}
}

// spareTimeout bounds the wait of spare for the pool.
const spareTimeout = time.Second

// room reports whether the pool has n connections it may hand out (idle, or
// to open) besides those acquired: the head waits on a slot only when the
// pool can still give a connection to the slot taken after an announcement.
func (s *Semaphore) room(n int32) bool {
	st := s.pool.Stat()
	return st.MaxConns()-st.AcquiredConns() >= n
}

// serveOrLeave is serve, then leave: in the background once a slot is won,
// and before returning otherwise, also when serve panics (a hook's panic).
func (h *head) serveOrLeave(ctx context.Context, a *acquisition, dl time.Time, v view) (l *advisorylock.Lock, err error) {
	background := false
	defer func() {
		if background {
			go h.leave()
		} else {
			h.leave()
		}
	}()
	l, err = h.serve(ctx, a, dl, v)
	background = err == nil
	return l, err
}

// bound returns the effective bound on an acquisition starting at now: the
// earlier of WithTimeout and ctx's deadline; 0 for none, negative when already
// passed.
func (s *Semaphore) bound(ctx context.Context, now time.Time) time.Duration {
	bound := s.cfg.timeout
	if dl, ok := ctx.Deadline(); ok {
		if rest := dl.Sub(now); bound == 0 || rest < bound {
			bound = rest
			if bound == 0 {
				bound = -1
			}
		}
	}
	return bound
}

// outcomeOf classifies an acquisition error for hooks.
func outcomeOf(err error) advisorylock.Outcome {
	switch {
	case err == nil:
		return advisorylock.OutcomeAcquired
	case errors.Is(err, advisorylock.ErrLocked):
		return advisorylock.OutcomeBusy
	case errors.Is(err, context.DeadlineExceeded):
		return advisorylock.OutcomeTimeout
	case errors.Is(err, context.Canceled):
		return advisorylock.OutcomeCanceled
	default:
		return advisorylock.OutcomeError
	}
}
