package semaphore_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
	advisorylockotel "github.com/advisorylock/advisorylock/otel"
	"github.com/advisorylock/advisorylock/semaphore"
)

// recorder is a Hook, HoldHook and LostHook that records its calls.
type recorder struct {
	mu      sync.Mutex
	events  []event
	changed chan struct{} // closed, and replaced, by each add; nil until a waitFor
}

type event struct {
	op         string
	m          *advisorylock.Mutex
	l          *advisorylock.Lock
	ctx        context.Context
	start      advisorylock.AcquireStartData
	end        advisorylock.AcquireEndData
	holdStart  advisorylock.HoldStartData
	holdEnd    advisorylock.HoldEndData
	actxReturn context.Context // what AcquireStart returned
}

type recorderKey struct{}

func (r *recorder) add(e event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	if r.changed != nil {
		close(r.changed)
		r.changed = nil
	}
}

// waitFor blocks until a call of op is recorded, failing t after d. A lost
// lock's LockLost and HoldEnd come from the goroutine that found the loss,
// after Done is closed: an Unlock may return before them.
func (r *recorder) waitFor(t *testing.T, op string, d time.Duration) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		r.mu.Lock()
		for _, e := range r.events {
			if e.op == op {
				r.mu.Unlock()
				return
			}
		}
		if r.changed == nil {
			r.changed = make(chan struct{})
		}
		changed := r.changed
		r.mu.Unlock()
		select {
		case <-changed:
		case <-timer.C:
			t.Fatalf("no %s hook call after %v", op, d)
		}
	}
}

func (r *recorder) ops() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ops []string
	for _, e := range r.events {
		ops = append(ops, e.op)
	}
	return ops
}

func (r *recorder) get(op string) event {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.op == op {
			return e
		}
	}
	return event{}
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = nil
}

func (r *recorder) AcquireStart(ctx context.Context, m *advisorylock.Mutex, data advisorylock.AcquireStartData) context.Context {
	out := context.WithValue(ctx, recorderKey{}, "acquire")
	r.add(event{op: "AcquireStart", m: m, ctx: ctx, start: data, actxReturn: out})
	return out
}

func (r *recorder) AcquireEnd(ctx context.Context, m *advisorylock.Mutex, data advisorylock.AcquireEndData) {
	r.add(event{op: "AcquireEnd", m: m, ctx: ctx, end: data})
}

func (r *recorder) HoldStart(ctx context.Context, l *advisorylock.Lock, data advisorylock.HoldStartData) context.Context {
	r.add(event{op: "HoldStart", l: l, ctx: ctx, holdStart: data})
	return context.WithValue(ctx, recorderKey{}, "hold")
}

func (r *recorder) HoldEnd(ctx context.Context, l *advisorylock.Lock, data advisorylock.HoldEndData) {
	r.add(event{op: "HoldEnd", l: l, ctx: ctx, holdEnd: data})
}

func (r *recorder) LockLost(ctx context.Context, l *advisorylock.Lock, _ advisorylock.LostData) {
	r.add(event{op: "LockLost", l: l, ctx: ctx})
}

type callerKey struct{}

// A Lock that waits, and on the way tries a slot that turns out busy, shows
// as one acquisition and one hold: the slots tried are not shown, the
// acquisition is reported with the queue's Mutex and its whole wait, and the
// hold with the slot's Lock, from the caller's context.
func TestHooks_oneAcquisition(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	rec := &recorder{}
	s := semaphore.New(newPool(t, dsn), "hooks", 2, semaphore.WithHooks(rec), semaphore.WithRecheck(time.Hour))
	other := semaphore.New(newPool(t, dsn), "hooks", 2)
	held := mustLock(t, other)
	k0, _ := s.SlotKey(0).Int64()
	k1, _ := s.SlotKey(1).Int64()
	// A raw session holds the other slot, so that an announcement of it finds
	// it busy.
	raw := pgtest.Connect(t, dsn)
	k := k0
	if other.Slot(held) == 0 {
		k = k1
	}
	if _, err := raw.Exec(t.Context(), "select pg_advisory_lock($1::int8)", k); err != nil {
		t.Fatal(err)
	}
	ctx := context.WithValue(t.Context(), callerKey{}, "caller")
	ch := lockAsync(t, ctx, s)
	awaitQueued(t, admin, s, 1)
	// A false announcement of the raw session's slot: the head tries it and
	// finds it busy.
	busySlot := int(uint64(k) - uint64(mustInt64(s.QueueKey())) - 1)
	if _, err := admin.Exec(t.Context(), "select pg_notify($1, $2)", channelOf(s), itoa(int64(busySlot))); err != nil {
		t.Fatal(err)
	}
	awaitLocks(t, admin, "granted and "+keyCond(s.SlotKey(busySlot)), 1)
	release(t, held)
	r := await(t, ch, awaitTimeout, "Lock")
	if r.err != nil {
		t.Fatal(r.err)
	}
	if got, want := rec.ops(), []string{"AcquireStart", "AcquireEnd", "HoldStart"}; !slices.Equal(got, want) {
		t.Fatalf("hook calls %v; want %v", got, want)
	}
	as, ae, hs := rec.get("AcquireStart"), rec.get("AcquireEnd"), rec.get("HoldStart")
	if as.m == nil || as.m.Key() != s.QueueKey() || ae.m != as.m {
		t.Errorf("AcquireStart and AcquireEnd with %v and %v; want the queue's Mutex (key %v) for both", as.m, ae.m, s.QueueKey())
	}
	if as.ctx.Value(callerKey{}) != "caller" || as.start.Try {
		t.Errorf("AcquireStart: not with the caller's context, or Try set")
	}
	if ae.end.Outcome != advisorylock.OutcomeAcquired || ae.end.Lock != r.l || ae.end.Err != nil || ae.ctx != as.actxReturn {
		t.Errorf("AcquireEnd = %+v; want acquired with the Lock returned, on AcquireStart's context", ae.end)
	}
	if hs.l != r.l || hs.holdStart.AcquireContext != as.actxReturn || hs.ctx.Value(callerKey{}) != "caller" || hs.ctx.Value(recorderKey{}) != nil {
		t.Errorf("HoldStart: want the slot's Lock, on the caller's context, with AcquireStart's context as AcquireContext")
	}
	if hs.holdStart.Wait < ae.end.Wait-time.Millisecond || ae.end.Wait <= 0 {
		t.Errorf("waits: AcquireEnd %v, HoldStart %v; want the whole wait in both", ae.end.Wait, hs.holdStart.Wait)
	}
	release(t, r.l)
	if got, want := rec.ops(), []string{"AcquireStart", "AcquireEnd", "HoldStart", "HoldEnd"}; !slices.Equal(got, want) {
		t.Fatalf("hook calls %v; want %v", got, want)
	}
	if he := rec.get("HoldEnd"); he.l != r.l || he.holdEnd.Lost || he.ctx.Value(recorderKey{}) != "hold" {
		t.Errorf("HoldEnd: want the slot's Lock, not lost, on the hold context")
	}
}

// A failed acquisition ends with its outcome: busy for a TryLock that finds
// every slot held, timeout; a lost slot is reported as for a Mutex.
func TestHooks_outcomes(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	rec := &recorder{}
	// The bound covers opening a lock session (a connection, and its
	// authentication) when the one in use was closed after a wait: 100ms
	// was too short once on a loaded machine.
	const bound = time.Second
	s := semaphore.New(newPool(t, dsn), "outcomes", 1, semaphore.WithHooks(rec), semaphore.WithTimeout(bound))
	held := mustLock(t, semaphore.New(newPool(t, dsn), "outcomes", 1))
	if _, err := s.TryLock(t.Context()); !errors.Is(err, advisorylock.ErrLocked) {
		t.Fatalf("TryLock: %v; want ErrLocked", err)
	}
	if got, want := rec.ops(), []string{"AcquireStart", "AcquireEnd"}; !slices.Equal(got, want) {
		t.Fatalf("hook calls %v; want %v", got, want)
	}
	if e := rec.get("AcquireEnd"); e.end.Outcome != advisorylock.OutcomeBusy || !rec.get("AcquireStart").start.Try {
		t.Errorf("TryLock: outcome %v; want busy, with Try set", e.end.Outcome)
	}
	rec.reset()
	if _, err := s.Lock(t.Context()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock: %v; want DeadlineExceeded", err)
	}
	if e := rec.get("AcquireEnd"); e.end.Outcome != advisorylock.OutcomeTimeout || !errors.Is(e.end.Err, context.DeadlineExceeded) {
		t.Errorf("Lock: outcome %v (%v); want timeout", e.end.Outcome, e.end.Err)
	}
	if d := rec.get("AcquireStart").start.Timeout; d <= 0 || d > bound {
		t.Errorf("AcquireStart Timeout = %v; want the WithTimeout bound", d)
	}
	release(t, held)
	rec.reset()
	l, err := s.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	pgtest.Terminate(t, admin, l.PID())
	await(t, l.Done(), awaitTimeout, "Done")
	release(t, l)
	rec.waitFor(t, "HoldEnd", awaitTimeout)
	if got, want := rec.ops(), []string{"AcquireStart", "AcquireEnd", "HoldStart", "LockLost", "HoldEnd"}; !slices.Equal(got, want) {
		t.Fatalf("hook calls %v; want %v", got, want)
	}
	if !rec.get("HoldEnd").holdEnd.Lost {
		t.Errorf("HoldEnd: Lost not set")
	}
}

// WithLock's function runs on a context derived from the caller's: the
// acquisition's bound (WithTimeout) does not cancel it, a loss does, with a
// cause matching ErrLockLost.
func TestWithLock_context(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	for _, hooks := range []bool{false, true} {
		var opts []semaphore.Option
		if hooks {
			opts = append(opts, semaphore.WithHooks(&recorder{}))
		}
		s := semaphore.New(newPool(t, dsn), "with-lock", 1, append(opts, semaphore.WithTimeout(5*time.Second))...)
		ctx := context.WithValue(t.Context(), callerKey{}, "caller")
		got, err := advisorylock.WithLock(ctx, s, func(ctx context.Context) (string, error) {
			if ctx.Value(callerKey{}) != "caller" {
				t.Error("fn's context does not derive from the caller's")
			}
			l, ok := advisorylock.LockFromContext(ctx)
			if !ok || s.Slot(l) != 0 {
				t.Errorf("LockFromContext = %v, %v; want slot 0's Lock", l, ok)
			}
			if _, ok := ctx.Deadline(); ok {
				t.Error("fn's context has the acquisition's deadline")
			}
			pgtest.Terminate(t, admin, l.PID())
			<-ctx.Done()
			return "ended", context.Cause(ctx)
		})
		if got != "ended" || !errors.Is(err, advisorylock.ErrLockLost) {
			t.Errorf("hooks %v: WithLock = %q, %v; want \"ended\" and ErrLockLost", hooks, got, err)
		}
	}
}

// The otel hook, given to a semaphore, records one acquisition span and one
// hold span per WithLock.
func TestHooks_otel(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	s := semaphore.New(newPool(t, dsn), "otel", 2, semaphore.WithHooks(advisorylockotel.NewHook(advisorylockotel.WithTracerProvider(tp))))
	for range 3 {
		if _, err := advisorylock.WithLock(t.Context(), s, func(context.Context) (int, error) { return 0, nil }); err != nil {
			t.Fatal(err)
		}
	}
	counts := map[string]int{}
	for _, sp := range sr.Ended() {
		counts[sp.Name()]++
	}
	if counts[advisorylockotel.AcquireSpanName] != 3 || counts[advisorylockotel.HoldSpanName] != 3 || len(counts) != 2 {
		t.Errorf("spans %v; want 3 acquisitions and 3 holds", counts)
	}
}

func mustInt64(k advisorylock.Key) int64 {
	v, _ := k.Int64()
	return v
}

// channelOf is the semaphore's notification channel, as documented.
func channelOf(s *semaphore.Semaphore) string {
	return "advisorylock.semaphore." + uitoa(uint64(mustInt64(s.QueueKey())))
}

// panicHook panics in HoldStart.
type panicHook struct{ recorder }

var errBoom = errors.New("boom")

func (h *panicHook) HoldStart(context.Context, *advisorylock.Lock, advisorylock.HoldStartData) context.Context {
	panic(errBoom)
}

// A hook that panics leaves no slot held and no queue key held, and its
// panic reaches the caller of Lock, also when it panics in the head's wait on
// a slot, which runs in a goroutine of its own. testDB and newPool check
// that nothing is left locked or acquired.
func TestHooks_panic(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	s := semaphore.New(newPool(t, dsn), "panic", 1, semaphore.WithHooks(&panicHook{}))
	lock := func() (r any) {
		defer func() { r = recover() }()
		l, err := s.Lock(t.Context())
		t.Errorf("Lock returned %v, %v; want a panic", l, err)
		return nil
	}
	if r := lock(); r != errBoom {
		t.Errorf("free slot: recovered %v; want the hook's panic", r)
	}
	held := mustLock(t, semaphore.New(newPool(t, dsn), "panic", 1))
	done := make(chan any, 1)
	go func() { done <- lock() }()
	awaitQueued(t, admin, s, 1)
	awaitLocks(t, admin, "not granted and "+keyCond(s.SlotKey(0)), 1)
	release(t, held)
	if r := await(t, done, awaitTimeout, "Lock"); r != errBoom {
		t.Errorf("waiting: recovered %v; want the hook's panic", r)
	}
	awaitLocks(t, admin, "true", 0)
}
