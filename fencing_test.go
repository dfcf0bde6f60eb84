package advisorylock_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// fencedPath is one way a fenced lock is acquired: each sends a statement of
// a shape of its own (see statements.go).
type fencedPath struct {
	name   string
	opts   []advisorylock.Option
	try    bool // TryLock rather than Lock
	set    bool // a set of the key and another
	shared bool // shared mode
}

// fencedPaths are every acquisition path: a pinned pooled connection (with
// and without lock_timeout), transaction scope, sets, and lock sessions (a
// try on a shared session; a Lock that finds the key busy waits on a session
// of its own, with and without lock_timeout; AllowPooler's literal SQL).
var fencedPaths = []fencedPath{
	{name: "pinned lock", opts: []advisorylock.Option{advisorylock.PinConnection()}},
	{name: "pinned lock timeout", opts: []advisorylock.Option{advisorylock.PinConnection(), advisorylock.WithTimeout(time.Minute)}},
	{name: "pinned try", try: true, opts: []advisorylock.Option{advisorylock.PinConnection()}},
	{name: "pinned set lock", set: true, opts: []advisorylock.Option{advisorylock.PinConnection()}},
	{name: "pinned set lock timeout", set: true, opts: []advisorylock.Option{advisorylock.PinConnection(), advisorylock.WithTimeout(time.Minute)}},
	{name: "pinned set try", set: true, try: true, opts: []advisorylock.Option{advisorylock.PinConnection()}},
	{name: "transaction lock", opts: []advisorylock.Option{advisorylock.TransactionScope()}},
	{name: "transaction lock timeout", opts: []advisorylock.Option{advisorylock.TransactionScope(), advisorylock.WithTimeout(time.Minute)}},
	{name: "transaction try", try: true, opts: []advisorylock.Option{advisorylock.TransactionScope()}},
	{name: "transaction set lock", set: true, opts: []advisorylock.Option{advisorylock.TransactionScope()}},
	{name: "transaction set try", set: true, try: true, opts: []advisorylock.Option{advisorylock.TransactionScope()}},
	{name: "sessions lock"},
	{name: "sessions lock timeout", opts: []advisorylock.Option{advisorylock.WithTimeout(time.Minute)}},
	{name: "sessions try", try: true},
	{name: "sessions set lock", set: true},
	{name: "sessions set try", set: true, try: true},
	{name: "sessions literal lock", opts: []advisorylock.Option{advisorylock.AllowPooler()}},
	{name: "sessions literal try", try: true, opts: []advisorylock.Option{advisorylock.AllowPooler()}},
	{name: "pinned shared lock", shared: true, opts: []advisorylock.Option{advisorylock.PinConnection()}},
	{name: "sessions shared try", try: true, shared: true},
}

// mutex returns the fenced Mutex of the path for key (and other, for a set),
// with extra options last.
func (p fencedPath) mutex(pool *pgxpool.Pool, key, other advisorylock.Key, extra ...advisorylock.Option) *advisorylock.Mutex {
	opts := append([]advisorylock.Option{advisorylock.WithFencing()}, p.opts...)
	if p.shared {
		opts = append(opts, advisorylock.Shared())
	}
	opts = append(opts, extra...)
	if p.set {
		return advisorylock.NewSetWithKeys(pool, []advisorylock.Key{key, other}, opts...)
	}
	return advisorylock.NewWithKey(pool, key, opts...)
}

// acquire acquires m as the path does.
func (p fencedPath) acquire(ctx context.Context, m *advisorylock.Mutex) (*advisorylock.Lock, error) {
	if p.try {
		return m.TryLock(ctx)
	}
	return m.Lock(ctx)
}

// Every acquisition path hands out a token, larger than every token handed
// out before it; a Mutex without fencing hands out none.
func TestFencing_everyPath(t *testing.T) {
	t.Parallel()
	pool, other := twoPools(t)
	ctx := t.Context()
	k, k2 := advisorylock.Int64Key(1), advisorylock.Int64Key(2)
	var last int64
	// Twice round, so that each path also follows every other.
	for round := range 2 {
		for _, p := range fencedPaths {
			pl := pool
			if round == 1 {
				pl = other
			}
			l, err := p.acquire(ctx, p.mutex(pl, k, k2))
			if err != nil {
				t.Fatalf("%s: %v", p.name, err)
			}
			tok := l.Token()
			if err := l.Unlock(ctx); err != nil {
				t.Fatalf("%s: Unlock: %v", p.name, err)
			}
			if tok <= last {
				t.Errorf("%s: token %d after %d; want a larger one", p.name, tok, last)
			}
			if got := l.Token(); got != tok {
				t.Errorf("%s: Token after Unlock = %d; want %d, the acquisition's", p.name, got, tok)
			}
			last = tok
		}
	}
	for _, opt := range []advisorylock.Option{advisorylock.PinConnection(), advisorylock.TransactionScope(), nil} {
		l, err := advisorylock.NewWithKey(pool, k, opt).Lock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if tok := l.Token(); tok != 0 {
			t.Errorf("Token of a lock without fencing = %d; want 0", tok)
		}
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var nilLock *advisorylock.Lock
	if tok := nilLock.Token(); tok != 0 {
		t.Errorf("Token of a nil Lock = %d; want 0", tok)
	}
}

// The token is drawn after the grant, in the lock statement: a waiter that is
// granted the lock once its holder lets go gets a larger token than one drawn
// by a TryLock that ran while it waited. Were nextval evaluated when the
// statement began (before the wait), the waiter's token would be the smaller:
// the control case shows exactly that with raw SQL that draws first.
func TestFencing_drawnAfterGrant(t *testing.T) {
	t.Parallel()
	for _, p := range fencedPaths {
		if p.try || p.shared {
			continue // a try never waits; shared holders do not exclude each other
		}
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			testDrawnAfterGrant(t, func(ctx context.Context, pool *pgxpool.Pool, k advisorylock.Key) (int64, error) {
				l, err := p.mutex(pool, k, advisorylock.Int64Key(3)).Lock(ctx)
				if err != nil {
					return 0, err
				}
				return l.Token(), l.Unlock(ctx)
			}, true)
		})
	}
	t.Run("control: nextval before the lock", func(t *testing.T) {
		t.Parallel()
		testDrawnAfterGrant(t, func(ctx context.Context, pool *pgxpool.Pool, k advisorylock.Key) (int64, error) {
			conn, err := pool.Acquire(ctx)
			if err != nil {
				return 0, err
			}
			defer conn.Release()
			var tok int64
			err = conn.QueryRow(ctx, "select nextval('public.advisorylock_fencing'), pg_advisory_lock(1)::text").Scan(&tok, nil)
			if err == nil {
				_, err = conn.Exec(ctx, "select pg_advisory_unlock(1)")
			}
			return tok, err
		}, false)
	})
}

// testDrawnAfterGrant runs wait, which waits for k and returns its token,
// while another process holds k; while it waits in the server, a fenced
// TryLock of another key draws a token; then the holder lets go. after says
// whether wait's token must be the larger (drawn after the grant) or the
// smaller (drawn before the wait).
func testDrawnAfterGrant(t *testing.T, wait func(ctx context.Context, pool *pgxpool.Pool, k advisorylock.Key) (int64, error), after bool) {
	pool, other := twoPools(t)
	ctx := t.Context()
	k := advisorylock.Int64Key(1)
	holder, err := advisorylock.NewWithKey(other, k, advisorylock.WithFencing()).Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		tok int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		tok, err := wait(ctx, pool, k)
		done <- result{tok, err}
	}()
	pgtest.AwaitWaiters(t, other, 1)
	l, err := advisorylock.NewWithKey(other, advisorylock.Int64Key(2), advisorylock.WithFencing()).TryLock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	meanwhile := l.Token()
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	switch {
	case after && r.tok <= meanwhile:
		t.Errorf("waiter's token %d, TryLock's while it waited %d; want the waiter's larger (drawn after the grant)", r.tok, meanwhile)
	case !after && r.tok >= meanwhile:
		t.Errorf("control: waiter's token %d, TryLock's %d; want the waiter's smaller (drawn before the wait)", r.tok, meanwhile)
	}
	if holder.Token() >= meanwhile {
		t.Errorf("holder's token %d, later TryLock's %d; want the holder's smaller", holder.Token(), meanwhile)
	}
}

// Tokens increase in grant order for a key across processes (pools), scopes
// and acquisition paths: holders taking turns on one key, each recording its
// token while it holds the lock (so the records are in grant order), record
// a strictly increasing series.
func TestFencing_grantOrder(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Database(t)
	pools := []*pgxpool.Pool{pgtest.NewPool(t, dsn), pgtest.NewPool(t, dsn), pgtest.NewPool(t, dsn)}
	ctx := t.Context()
	k := advisorylock.Int64Key(42)
	var mutexes []*advisorylock.Mutex
	var paths []fencedPath
	for i, pool := range pools {
		for _, p := range fencedPaths {
			if p.shared {
				continue
			}
			mutexes = append(mutexes, p.mutex(pool, k, advisorylock.Int64Key(int64(100+i))))
			paths = append(paths, p)
		}
	}
	var (
		mu      sync.Mutex
		tokens  []int64
		holding atomic.Int32
	)
	const goroutines, rounds = 8, 12
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for r := range rounds {
				i := (g*rounds + r) % len(mutexes)
				l, err := paths[i].acquire(ctx, mutexes[i])
				if errors.Is(err, advisorylock.ErrLocked) {
					continue
				}
				if err != nil {
					t.Errorf("%s: %v", paths[i].name, err)
					return
				}
				if n := holding.Add(1); n != 1 {
					t.Errorf("%d holders at once", n)
				}
				mu.Lock()
				tokens = append(tokens, l.Token())
				mu.Unlock()
				holding.Add(-1)
				if err := l.Unlock(ctx); err != nil {
					t.Errorf("%s: Unlock: %v", paths[i].name, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if len(tokens) < goroutines*rounds/2 {
		t.Errorf("%d sections of %d attempts; want at least half to have got the lock", len(tokens), goroutines*rounds)
	}
	for i := 1; i < len(tokens); i++ {
		if tokens[i] <= tokens[i-1] {
			t.Errorf("section %d's token %d follows %d; want tokens increasing in grant order", i, tokens[i], tokens[i-1])
		}
	}
}

// The token reaches WithLock's function through LockFromContext, and the
// hooks through AcquireEndData and HoldStartData.
func TestFencing_contextAndHooks(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t, pgtest.Database(t))
	h := &tokenHook{}
	m := advisorylock.New(pool, "fenced", advisorylock.WithFencing(), advisorylock.WithHooks(h))
	tok, err := advisorylock.WithLock(t.Context(), m, func(ctx context.Context) (int64, error) {
		l, ok := advisorylock.LockFromContext(ctx)
		if !ok {
			return 0, errors.New("no lock in the context")
		}
		return l.Token(), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if tok <= 0 {
		t.Fatalf("token in WithLock's function = %d; want a positive one", tok)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.acquireEnd != tok || h.holdStart != tok || h.lockToken != tok {
		t.Errorf("AcquireEndData.Token = %d, HoldStartData.Token = %d, its Lock's = %d; want %d each", h.acquireEnd, h.holdStart, h.lockToken, tok)
	}
}

// tokenHook records the tokens the hooks are given.
type tokenHook struct {
	mu                               sync.Mutex
	acquireEnd, holdStart, lockToken int64
}

func (h *tokenHook) AcquireStart(ctx context.Context, _ *advisorylock.Mutex, _ advisorylock.AcquireStartData) context.Context {
	return ctx
}

func (h *tokenHook) AcquireEnd(_ context.Context, _ *advisorylock.Mutex, d advisorylock.AcquireEndData) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.acquireEnd, h.lockToken = d.Token, d.Lock.Token()
}

func (h *tokenHook) HoldStart(ctx context.Context, _ *advisorylock.Lock, d advisorylock.HoldStartData) context.Context {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.holdStart = d.Token
	return ctx
}

func (h *tokenHook) HoldEnd(context.Context, *advisorylock.Lock, advisorylock.HoldEndData) {}
