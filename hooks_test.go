package advisorylock_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// hookEvent is one call of a hook method, as a hookRecorder saw it.
type hookEvent struct {
	hook string // the recorder's name
	op   string // "AcquireStart", "AcquireEnd", "HoldStart", "HoldEnd", "LockLost", "AcquireRetry"
	path []string

	acquireStart advisorylock.AcquireStartData
	acquireEnd   advisorylock.AcquireEndData
	holdStart    advisorylock.HoldStartData
	holdEnd      advisorylock.HoldEndData
	lost         advisorylock.LostData
	retry        advisorylock.AcquireRetryData
}

// hookPathKey is the context key under which hookRecorders chain their names:
// each Start appends "<name>.<op>" to the path it finds, so a context shows
// which Starts it went through, in order.
type hookPathKey struct{}

func hookPath(ctx context.Context) []string {
	if ctx == nil {
		return []string{"<nil context>"}
	}
	p, _ := ctx.Value(hookPathKey{}).([]string)
	return p
}

// hookLog is the ordered record of the calls of one or more hookRecorders,
// with a way to await a call.
type hookLog struct {
	mu      sync.Mutex
	events  []hookEvent
	changed chan struct{} // closed and replaced on every event
}

func newHookLog() *hookLog { return &hookLog{changed: make(chan struct{})} }

func (g *hookLog) add(e hookEvent) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.events = append(g.events, e)
	close(g.changed)
	g.changed = make(chan struct{})
}

// all returns a copy of the events so far.
func (g *hookLog) all() []hookEvent {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.events)
}

// ops returns the events so far as "hook.op" strings.
func (g *hookLog) ops() []string {
	var s []string
	for _, e := range g.all() {
		s = append(s, e.hook+"."+e.op)
	}
	return s
}

// only returns the events of operation op.
func (g *hookLog) only(op string) []hookEvent {
	var s []hookEvent
	for _, e := range g.all() {
		if e.op == op {
			s = append(s, e)
		}
	}
	return s
}

// await waits until n events of operation op have been recorded, or fails t
// after 10s.
func (g *hookLog) await(t *testing.T, op string, n int) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		g.mu.Lock()
		got := 0
		for _, e := range g.events {
			if e.op == op {
				got++
			}
		}
		changed := g.changed
		g.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("%s events: got %d after 10s; want %d (log %v)", op, got, n, g.ops())
		}
	}
}

// hookRecorder implements Hook, HoldHook, LostHook and RetryHook, recording each
// call in its log. panicIn names an operation in which it panics (after
// recording the call).
type hookRecorder struct {
	name    string
	log     *hookLog
	panicIn string
}

func newHookRecorder(name string) *hookRecorder {
	return &hookRecorder{name: name, log: newHookLog()}
}

func (r *hookRecorder) record(ctx context.Context, e hookEvent) {
	e.hook, e.path = r.name, hookPath(ctx)
	r.log.add(e)
	if r.panicIn == e.op {
		panic(r.name + " panics in " + e.op)
	}
}

func (r *hookRecorder) start(ctx context.Context, op string) context.Context {
	return context.WithValue(ctx, hookPathKey{}, append(slices.Clone(hookPath(ctx)), r.name+"."+op))
}

func (r *hookRecorder) AcquireStart(ctx context.Context, m *advisorylock.Mutex, data advisorylock.AcquireStartData) context.Context {
	r.record(ctx, hookEvent{op: "AcquireStart", acquireStart: data})
	return r.start(ctx, "AcquireStart")
}

func (r *hookRecorder) AcquireEnd(ctx context.Context, m *advisorylock.Mutex, data advisorylock.AcquireEndData) {
	r.record(ctx, hookEvent{op: "AcquireEnd", acquireEnd: data})
}

func (r *hookRecorder) HoldStart(ctx context.Context, l *advisorylock.Lock, data advisorylock.HoldStartData) context.Context {
	r.record(ctx, hookEvent{op: "HoldStart", holdStart: data})
	return r.start(ctx, "HoldStart")
}

func (r *hookRecorder) HoldEnd(ctx context.Context, l *advisorylock.Lock, data advisorylock.HoldEndData) {
	r.record(ctx, hookEvent{op: "HoldEnd", holdEnd: data})
}

func (r *hookRecorder) LockLost(ctx context.Context, l *advisorylock.Lock, data advisorylock.LostData) {
	r.record(ctx, hookEvent{op: "LockLost", lost: data})
}

func (r *hookRecorder) AcquireRetry(ctx context.Context, m *advisorylock.Mutex, data advisorylock.AcquireRetryData) {
	r.record(ctx, hookEvent{op: "AcquireRetry", retry: data})
}

// lostOnly implements LostHook, and Hook with methods that do nothing.
type lostOnly struct{ r *hookRecorder }

func (lostOnly) AcquireStart(ctx context.Context, _ *advisorylock.Mutex, _ advisorylock.AcquireStartData) context.Context {
	return ctx
}

func (lostOnly) AcquireEnd(context.Context, *advisorylock.Mutex, advisorylock.AcquireEndData) {}

func (h lostOnly) LockLost(ctx context.Context, l *advisorylock.Lock, data advisorylock.LostData) {
	h.r.LockLost(ctx, l, data)
}

// assertBalanced fails t unless every AcquireStart in log has exactly one
// AcquireEnd and every HoldStart exactly one HoldEnd, each after its Start.
func assertBalanced(t *testing.T, log *hookLog) {
	t.Helper()
	open := map[string]int{}
	for _, e := range log.all() {
		switch e.op {
		case "AcquireStart", "HoldStart":
			open[e.hook+"."+strings.TrimSuffix(e.op, "Start")]++
		case "AcquireEnd", "HoldEnd":
			k := e.hook + "." + strings.TrimSuffix(e.op, "End")
			if open[k] == 0 {
				t.Errorf("%s.%s without a Start before it (log %v)", e.hook, e.op, log.ops())
			}
			open[k]--
		}
	}
	for k, n := range open {
		if n != 0 {
			t.Errorf("%s: %d Starts without an End (log %v)", k, n, log.ops())
		}
	}
}

// Each way an acquisition can end is reported once, with its outcome, its
// error and its wait; only an acquired lock is reported to HoldStart.
func TestHooks_outcomes(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Database(t)
	pool := pgtest.NewPool(t, dsn)
	// The holder is on a pool of its own, as in another process: waiters
	// then wait in the server, not in this process's queue for the lock.
	holder, err := advisorylock.New(pgtest.NewPool(t, dsn), "outcomes").Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Unlock(context.Background())

	closedPool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	closedPool.Close()

	const bound = 100 * time.Millisecond
	tests := []struct {
		name     string
		pool     *pgxpool.Pool
		lockName string
		opts     []advisorylock.Option
		try      bool
		cancel   bool // cancel the context once the wait is seen in pg_locks
		outcome  advisorylock.Outcome
		want     error // what the error must match; nil for none
		timeout  time.Duration
		minWait  time.Duration
	}{
		{name: "acquired", pool: pool, lockName: "free", outcome: advisorylock.OutcomeAcquired},
		{name: "acquired by TryLock", pool: pool, lockName: "free", try: true, outcome: advisorylock.OutcomeAcquired},
		{name: "acquired in transaction scope", pool: pool, lockName: "free", opts: []advisorylock.Option{advisorylock.TransactionScope()}, outcome: advisorylock.OutcomeAcquired},
		{name: "busy", pool: pool, lockName: "outcomes", try: true, outcome: advisorylock.OutcomeBusy, want: advisorylock.ErrLocked},
		{name: "busy in transaction scope", pool: pool, lockName: "outcomes", try: true, opts: []advisorylock.Option{advisorylock.TransactionScope()}, outcome: advisorylock.OutcomeBusy, want: advisorylock.ErrLocked},
		{name: "timeout", pool: pool, lockName: "outcomes", opts: []advisorylock.Option{advisorylock.WithTimeout(bound)}, outcome: advisorylock.OutcomeTimeout, want: context.DeadlineExceeded, timeout: bound, minWait: bound},
		{name: "canceled", pool: pool, lockName: "outcomes", cancel: true, outcome: advisorylock.OutcomeCanceled, want: context.Canceled},
		{name: "error: closed pool", pool: closedPool, lockName: "free", opts: []advisorylock.Option{advisorylock.PinConnection()}, outcome: advisorylock.OutcomeError, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newHookRecorder("r")
			m := advisorylock.New(tt.pool, tt.lockName, append(tt.opts, advisorylock.WithHooks(rec))...)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			type result struct {
				l   *advisorylock.Lock
				err error
			}
			done := make(chan result, 1)
			go func() {
				var r result
				if tt.try {
					r.l, r.err = m.TryLock(ctx)
				} else {
					r.l, r.err = m.Lock(ctx)
				}
				done <- r
			}()
			if tt.cancel {
				pgtest.AwaitWaiters(t, pool, 1)
				cancel()
			}
			r := <-done
			if r.l != nil {
				defer func() {
					if err := r.l.Unlock(context.Background()); err != nil {
						t.Errorf("Unlock = %v; want nil", err)
					}
				}()
			}

			starts, ends := rec.log.only("AcquireStart"), rec.log.only("AcquireEnd")
			if len(starts) != 1 || len(ends) != 1 {
				t.Fatalf("AcquireStart, AcquireEnd called %d, %d times; want 1, 1 (log %v)", len(starts), len(ends), rec.log.ops())
			}
			if got := starts[0].acquireStart; got.Try != tt.try || got.Timeout != tt.timeout {
				t.Errorf("AcquireStartData = %+v; want Try %v, Timeout %v", got, tt.try, tt.timeout)
			}
			end := ends[0].acquireEnd
			if end.Outcome != tt.outcome {
				t.Errorf("Outcome = %v; want %v (err %v)", end.Outcome, tt.outcome, end.Err)
			}
			if end.Err != r.err {
				t.Errorf("AcquireEndData.Err = %v; want the error returned, %v", end.Err, r.err)
			}
			if end.Lock != r.l {
				t.Errorf("AcquireEndData.Lock = %p; want the lock returned, %p", end.Lock, r.l)
			}
			switch {
			case tt.outcome == advisorylock.OutcomeAcquired && r.err != nil:
				t.Fatalf("lock = %v; want success", r.err)
			case tt.outcome != advisorylock.OutcomeAcquired && r.err == nil:
				t.Fatalf("lock succeeded; want outcome %v", tt.outcome)
			case tt.want != nil && !errors.Is(r.err, tt.want):
				t.Errorf("lock = %v; want an error matching %v", r.err, tt.want)
			}
			if end.Wait <= 0 || end.Wait < tt.minWait {
				t.Errorf("AcquireEndData.Wait = %v; want > 0 and at least %v", end.Wait, tt.minWait)
			}
			if got := ends[0].path; !slices.Equal(got, []string{"r.AcquireStart"}) {
				t.Errorf("AcquireEnd's context went through %v; want [r.AcquireStart]", got)
			}

			holds := rec.log.only("HoldStart")
			if tt.outcome != advisorylock.OutcomeAcquired {
				if len(holds) != 0 {
					t.Errorf("HoldStart called %d times after a failed acquisition; want 0", len(holds))
				}
				return
			}
			if len(holds) != 1 {
				t.Fatalf("HoldStart called %d times; want 1 (log %v)", len(holds), rec.log.ops())
			}
			if w := holds[0].holdStart.Wait; w < end.Wait {
				t.Errorf("HoldStartData.Wait = %v; want at least AcquireEndData.Wait %v", w, end.Wait)
			}
			// HoldStart gets the caller's context, not the acquisition's,
			// which comes in its data.
			if got := holds[0].path; len(got) != 0 {
				t.Errorf("HoldStart's context went through %v; want the caller's context", got)
			}
			if got := hookPath(holds[0].holdStart.AcquireContext); !slices.Equal(got, []string{"r.AcquireStart"}) {
				t.Errorf("HoldStartData.AcquireContext went through %v; want [r.AcquireStart]", got)
			}
		})
	}
}

// A Mutex whose input is bad fails before any hook is called: no Start goes
// without its End.
func TestHooks_badInputCallsNoHook(t *testing.T) {
	t.Parallel()
	rec := newHookRecorder("r")
	pool := pgtest.NewPool(t, pgtest.Database(t))
	for _, m := range []*advisorylock.Mutex{
		advisorylock.New(pool, "", advisorylock.WithHooks(rec)),
		advisorylock.New(nil, "x", advisorylock.WithHooks(rec)),
		advisorylock.New(pool, "x", advisorylock.WithHooks(rec), advisorylock.WithTimeout(-1)),
	} {
		if _, err := m.Lock(t.Context()); !errors.Is(err, advisorylock.ErrInvalidArgument) {
			t.Errorf("Lock = %v; want ErrInvalidArgument", err)
		}
	}
	if got := rec.log.ops(); len(got) != 0 {
		t.Errorf("hook calls %v; want none", got)
	}
}

// Every acquisition reports AcquireEnd once per AcquireStart, and every hold
// HoldEnd once per HoldStart, with concurrent holders, waiters and timeouts.
func TestHooks_balancedUnderContention(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t, pgtest.Database(t))
	rec := newHookRecorder("r")
	m := advisorylock.New(pool, "contended", advisorylock.WithHooks(rec), advisorylock.WithTimeout(30*time.Millisecond))
	var wg sync.WaitGroup
	const workers, rounds = 3, 10
	for range workers {
		wg.Go(func() {
			for range rounds {
				_, _ = advisorylock.WithLock(t.Context(), m, func(ctx context.Context) (int, error) {
					time.Sleep(5 * time.Millisecond) // the work done under the lock
					return 0, nil
				})
				if l, err := m.TryLock(t.Context()); err == nil {
					if err := l.Unlock(t.Context()); err != nil {
						t.Errorf("Unlock = %v", err)
					}
				}
			}
		})
	}
	wg.Wait()
	if got := len(rec.log.only("AcquireStart")); got != 2*workers*rounds {
		t.Errorf("AcquireStart called %d times; want %d", got, 2*workers*rounds)
	}
	outcomes := map[advisorylock.Outcome]int{}
	for _, e := range rec.log.only("AcquireEnd") {
		outcomes[e.acquireEnd.Outcome]++
	}
	t.Logf("outcomes: %v", outcomes)
	if got, want := len(rec.log.only("HoldStart")), outcomes[advisorylock.OutcomeAcquired]; got != want {
		t.Errorf("HoldStart called %d times; want %d, one per acquisition", got, want)
	}
	assertBalanced(t, rec.log)
}

// HoldStart and HoldEnd pair up around the hold, however it ends, and Held
// covers the time the caller held the lock.
func TestHooks_hold(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t, pgtest.Database(t))
	for _, scope := range []advisorylock.Option{nil, advisorylock.TransactionScope()} {
		for _, release := range []string{"Unlock", "Rollback", "WithLock", "WithLock error"} {
			rec := newHookRecorder("r")
			m := advisorylock.New(pool, "hold", scope, advisorylock.WithHooks(rec))
			t.Run(m.Scope().String()+"/"+release, func(t *testing.T) {
				var acquired, releasing time.Time
				var err error
				if strings.HasPrefix(release, "WithLock") {
					fnErr := errors.New("fn failed")
					_, err = advisorylock.WithLock(t.Context(), m, func(ctx context.Context) (int, error) {
						acquired = time.Now()
						if got := len(rec.log.only("HoldStart")); got != 1 {
							t.Errorf("HoldStart called %d times before fn; want 1", got)
						}
						time.Sleep(10 * time.Millisecond) // the work done under the lock
						releasing = time.Now()
						if release == "WithLock error" {
							return 0, fnErr
						}
						return 0, nil
					})
					if release == "WithLock error" && !errors.Is(err, fnErr) {
						t.Fatalf("WithLock = %v; want fn's error", err)
					} else if release == "WithLock error" {
						err = nil
					}
				} else {
					var l *advisorylock.Lock
					l, err = m.Lock(t.Context())
					if err != nil {
						t.Fatal(err)
					}
					acquired = time.Now()
					if got := len(rec.log.only("HoldEnd")); got != 0 {
						t.Errorf("HoldEnd called %d times while held; want 0", got)
					}
					time.Sleep(10 * time.Millisecond) // the work done under the lock
					releasing = time.Now()
					if release == "Unlock" {
						err = l.Unlock(t.Context())
					} else {
						err = l.Rollback(t.Context())
					}
					if again := l.Unlock(t.Context()); !errors.Is(again, advisorylock.ErrNotHeld) {
						t.Errorf("second Unlock = %v; want ErrNotHeld", again)
					}
				}
				if err != nil {
					t.Fatal(err)
				}
				if got, want := rec.log.ops(), []string{"r.AcquireStart", "r.AcquireEnd", "r.HoldStart", "r.HoldEnd"}; !slices.Equal(got, want) {
					t.Fatalf("hook calls %v; want %v", got, want)
				}
				end := rec.log.only("HoldEnd")[0]
				if min := releasing.Sub(acquired); end.holdEnd.Held < min {
					t.Errorf("HoldEndData.Held = %v; want at least %v, the time the lock was held", end.holdEnd.Held, min)
				}
				if end.holdEnd.Lost || end.holdEnd.Err != nil {
					t.Errorf("HoldEndData = %+v; want Lost false and Err nil", end.holdEnd)
				}
				// HoldEnd gets the context HoldStart returned.
				if got := end.path; !slices.Equal(got, []string{"r.HoldStart"}) {
					t.Errorf("HoldEnd's context went through %v; want [r.HoldStart]", got)
				}
			})
		}
	}
}

// terminateAndWait ends the server session pid and waits until it has exited.
func terminateAndWait(t *testing.T, pool *pgxpool.Pool, pid int32) {
	t.Helper()
	pgtest.Terminate(t, pool, pid)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		var n int
		if err := pool.QueryRow(ctx, "select count(*) from pg_stat_activity where pid = $1", pid).Scan(&n); err != nil {
			t.Fatalf("awaiting the exit of session %d: %v", pid, err)
		}
		if n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("session %d still there 10s after pg_terminate_backend", pid)
		case <-time.After(time.Millisecond):
		}
	}
}

// A lock whose session the server ends is reported lost once, to LockLost and
// then HoldEnd, whoever notices: the watcher, the release, or a statement in
// the lock's transaction.
func TestHooks_lost(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		scope  advisorylock.Option
		notice func(t *testing.T, l *advisorylock.Lock)
	}{
		{"watcher", nil, func(t *testing.T, l *advisorylock.Lock) {
			select {
			case <-l.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("Done not closed 10s after the session ended")
			}
			if err := l.Unlock(t.Context()); !errors.Is(err, advisorylock.ErrLockLost) {
				t.Errorf("Unlock after the loss = %v; want ErrLockLost", err)
			}
		}},
		{"Unlock", nil, func(t *testing.T, l *advisorylock.Lock) {
			select {
			case <-l.Done():
				t.Log("the watcher noticed the loss before Unlock could")
			default:
			}
			if err := l.Unlock(t.Context()); !errors.Is(err, advisorylock.ErrLockLost) {
				t.Errorf("Unlock after the loss = %v; want ErrLockLost", err)
			}
		}},
		{"transaction statement", advisorylock.TransactionScope(), func(t *testing.T, l *advisorylock.Lock) {
			if _, err := l.Tx().Exec(t.Context(), "select 1"); err == nil {
				t.Error("a statement in the lost lock's transaction succeeded; want an error")
			}
			if err := l.Unlock(t.Context()); !errors.Is(err, advisorylock.ErrLockLost) {
				t.Errorf("Unlock after the loss = %v; want ErrLockLost", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool := pgtest.NewPool(t, pgtest.Database(t))
			warm(t, pool, 2) // so that the loss is set up quickly
			rec := newHookRecorder("r")
			m := advisorylock.New(pool, "lost", tt.scope, advisorylock.WithHooks(rec))
			l, err := m.Lock(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			pids := pgtest.AdvisoryLockPIDs(t, pool, "granted")
			if len(pids) != 1 {
				t.Fatalf("holders %v; want one", pids)
			}
			terminateAndWait(t, pool, pids[0])
			tt.notice(t, l)
			rec.log.await(t, "HoldEnd", 1)

			if got, want := rec.log.ops(), []string{"r.AcquireStart", "r.AcquireEnd", "r.HoldStart", "r.LockLost", "r.HoldEnd"}; !slices.Equal(got, want) {
				t.Fatalf("hook calls %v; want %v", got, want)
			}
			lost, end := rec.log.only("LockLost")[0], rec.log.only("HoldEnd")[0]
			if !errors.Is(lost.lost.Err, advisorylock.ErrLockLost) || lost.lost.Held <= 0 {
				t.Errorf("LostData = %+v; want Err matching ErrLockLost and Held > 0", lost.lost)
			}
			if !end.holdEnd.Lost || !errors.Is(end.holdEnd.Err, advisorylock.ErrLockLost) || end.holdEnd.Held < lost.lost.Held {
				t.Errorf("HoldEndData = %+v; want Lost, Err matching ErrLockLost and Held at least %v", end.holdEnd, lost.lost.Held)
			}
			for _, e := range []hookEvent{lost, end} {
				if !slices.Equal(e.path, []string{"r.HoldStart"}) {
					t.Errorf("%s's context went through %v; want [r.HoldStart]", e.op, e.path)
				}
			}
			// Nothing more is reported, however often the lock is released.
			_ = l.Unlock(t.Context())
			_ = l.Rollback(t.Context())
			if got := len(rec.log.all()); got != 5 {
				t.Errorf("%d hook calls after releasing a lost lock; want 5 (log %v)", got, rec.log.ops())
			}
			if got, want := len(pgtest.AdvisoryLockPIDs(t, pool, "granted")), 0; got != want {
				t.Errorf("%d sessions hold the lock; want %d", got, want)
			}
		})
	}
}

// slowHoldStart is a hookRecorder whose HoldStart, once recorded, calls
// during before returning.
type slowHoldStart struct {
	*hookRecorder
	during func(l *advisorylock.Lock)
}

func (h slowHoldStart) HoldStart(ctx context.Context, l *advisorylock.Lock, data advisorylock.HoldStartData) context.Context {
	ctx = h.hookRecorder.HoldStart(ctx, l, data)
	h.during(l)
	h.log.add(hookEvent{hook: h.name, op: "HoldStart returns"})
	return ctx
}

// A session lost while HoldStart runs is reported only after HoldStart has
// returned, with the context it returned: the watcher starts once the hooks
// have seen the lock.
func TestHooks_lostDuringHoldStart(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t, pgtest.Database(t))
	warm(t, pool, 2)
	rec := slowHoldStart{hookRecorder: newHookRecorder("r")}
	doneDuring := false
	rec.during = func(l *advisorylock.Lock) {
		terminateAndWait(t, pool, pgtest.AdvisoryLockPIDs(t, pool, "granted")[0])
		// A watcher running now would notice the ended session at once:
		// give it five times the delay before it starts watching.
		select {
		case <-l.Done():
			doneDuring = true
		case <-time.After(100 * time.Millisecond):
		}
	}
	m := advisorylock.New(pool, "lost", advisorylock.WithHooks(rec))
	l, err := m.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if doneDuring {
		t.Error("Done closed while HoldStart ran; want the loss reported after HoldStart returned")
	}
	select {
	case <-l.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed 10s after the session ended")
	}
	rec.log.await(t, "HoldEnd", 1)
	if got, want := rec.log.ops(), []string{"r.AcquireStart", "r.AcquireEnd", "r.HoldStart", "r.HoldStart returns", "r.LockLost", "r.HoldEnd"}; !slices.Equal(got, want) {
		t.Fatalf("hook calls %v; want %v", got, want)
	}
	for _, e := range rec.log.all()[4:] {
		if !slices.Equal(e.path, []string{"r.HoldStart"}) {
			t.Errorf("%s's context went through %v; want [r.HoldStart]", e.op, e.path)
		}
	}
	if err := l.Unlock(t.Context()); !errors.Is(err, advisorylock.ErrLockLost) {
		t.Errorf("Unlock = %v; want ErrLockLost", err)
	}
}

// MultiHook calls its hooks in order, each Start getting the context the
// previous one returned, each End the context the last Start returned, and
// each hook only for the interfaces it implements. Nested MultiHooks and
// several WithHooks are flattened in order; nil hooks are ignored.
func TestMultiHook(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t, pgtest.Database(t))
	log := newHookLog()
	a, b, c, d := newHookRecorder("a"), newHookRecorder("b"), newHookRecorder("c"), newHookRecorder("d")
	for _, r := range []*hookRecorder{a, b, c, d} {
		r.log = log
	}
	m := advisorylock.New(pool, "multi", advisorylock.WithHooks(
		advisorylock.MultiHook(a, nil, advisorylock.MultiHook(b, lostOnly{c})),
	), advisorylock.WithHooks(d))
	l, err := m.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	terminateAndWait(t, pool, pgtest.AdvisoryLockPIDs(t, pool, "granted")[0])
	<-l.Done()
	log.await(t, "HoldEnd", 3)

	want := []string{
		"a.AcquireStart", "b.AcquireStart", "d.AcquireStart",
		"a.AcquireEnd", "b.AcquireEnd", "d.AcquireEnd",
		"a.HoldStart", "b.HoldStart", "d.HoldStart",
		"a.LockLost", "b.LockLost", "c.LockLost", "d.LockLost",
		"a.HoldEnd", "b.HoldEnd", "d.HoldEnd",
	}
	if got := log.ops(); !slices.Equal(got, want) {
		t.Fatalf("hook calls\n%v; want\n%v", got, want)
	}
	chained := map[string][]string{
		"AcquireEnd": {"a.AcquireStart", "b.AcquireStart", "d.AcquireStart"},
		"HoldEnd":    {"a.HoldStart", "b.HoldStart", "d.HoldStart"},
		"LockLost":   {"a.HoldStart", "b.HoldStart", "d.HoldStart"},
	}
	for _, e := range log.all() {
		var want []string
		switch e.op {
		case "AcquireStart", "HoldStart":
			// A Start sees the Starts of the hooks before it.
			for _, prev := range []string{"a", "b", "d"} {
				if prev == e.hook {
					break
				}
				want = append(want, prev+"."+e.op)
			}
		default:
			want = chained[e.op]
		}
		if !slices.Equal(e.path, want) {
			t.Errorf("%s.%s's context went through %v; want %v", e.hook, e.op, e.path, want)
		}
	}
}

// MultiHook of no hooks, or of only nil hooks, is no hook: the Mutex takes
// the hook-free path and works.
func TestMultiHook_empty(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t, pgtest.Database(t))
	m := advisorylock.New(pool, "empty", advisorylock.WithHooks(advisorylock.MultiHook(), advisorylock.MultiHook(nil), nil))
	if _, err := advisorylock.WithLock(t.Context(), m, func(context.Context) (int, error) { return 0, nil }); err != nil {
		t.Fatal(err)
	}
}

// A hook that panics while a lock is held or being handed over does not leave
// the lock held nor a connection acquired: the panic goes on to the caller,
// and the lock is free again at once.
func TestHooks_panic(t *testing.T) {
	t.Parallel()
	pool, otherPool := twoPools(t)
	for _, op := range []string{"AcquireStart", "AcquireEnd", "HoldStart", "HoldEnd"} {
		for _, scope := range []advisorylock.Option{nil, advisorylock.TransactionScope()} {
			for _, via := range []string{"Lock", "WithLock"} {
				rec := newHookRecorder("r")
				rec.panicIn = op
				m := advisorylock.New(pool, "panic", scope, advisorylock.WithHooks(rec))
				t.Run(fmt.Sprintf("%s/%s/%s", op, m.Scope(), via), func(t *testing.T) {
					fnCalled := false
					recovered := func() (v any) {
						defer func() { v = recover() }()
						if via == "WithLock" {
							_, _ = advisorylock.WithLock(t.Context(), m, func(context.Context) (int, error) {
								fnCalled = true
								return 0, nil
							})
							return nil
						}
						l, err := m.Lock(t.Context())
						if err != nil {
							t.Errorf("Lock = %v", err)
							return nil
						}
						_ = l.Unlock(t.Context())
						return nil
					}()
					if want := "r panics in " + op; recovered != want {
						t.Fatalf("recovered %v; want the hook's panic %q", recovered, want)
					}
					if wantFn := op == "HoldEnd"; via == "WithLock" && fnCalled != wantFn {
						t.Errorf("fn called: %v; want %v", fnCalled, wantFn)
					}
					if n := pool.Stat().AcquiredConns(); n != 0 {
						t.Errorf("%d connections still acquired after the panic; want 0", n)
					}
					// Free in the server (another pool, as another process
					// would see it) and in this process's queue for the lock.
					// A lock released by closing its connection is free once
					// the server has ended the session, a moment later.
					pgtest.AwaitHolders(t, otherPool, 0)
					for _, p := range []*pgxpool.Pool{otherPool, pool} {
						other, err := advisorylock.New(p, "panic").TryLock(t.Context())
						if err != nil {
							t.Fatalf("TryLock after the panic = %v; want the lock free", err)
						}
						if err := other.Unlock(t.Context()); err != nil {
							t.Fatal(err)
						}
					}
				})
			}
		}
	}
}

// The context HoldStart returns is the parent of the one WithLock hands its
// function; the acquisition's context is not.
func TestHooks_holdContextIsFnParent(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t, pgtest.Database(t))
	for _, scope := range []advisorylock.Option{nil, advisorylock.TransactionScope()} {
		rec := newHookRecorder("r")
		m := advisorylock.New(pool, "parent", scope, advisorylock.WithHooks(rec))
		t.Run(m.Scope().String(), func(t *testing.T) {
			type callerKey struct{}
			ctx := context.WithValue(t.Context(), callerKey{}, "caller")
			_, err := advisorylock.WithLock(ctx, m, func(ctx context.Context) (int, error) {
				if got := hookPath(ctx); !slices.Equal(got, []string{"r.HoldStart"}) {
					t.Errorf("fn's context went through %v; want [r.HoldStart]", got)
				}
				if got := ctx.Value(callerKey{}); got != "caller" {
					t.Errorf("fn's context has the caller's value %v; want %q", got, "caller")
				}
				if l, ok := advisorylock.LockFromContext(ctx); !ok || l.Err() != nil {
					t.Errorf("LockFromContext = %v, %v; want the held lock", l, ok)
				}
				return 0, nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}
