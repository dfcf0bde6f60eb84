package election_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/election"
	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// TestElection_threeCandidates runs three candidates, on three pools, through
// Run, and moves the leadership by terminating the leader's session and by
// stepping down, while a sampler checks the server never shows two leaders
// and an observer follows every change.
func TestElection_threeCandidates(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	const name = "three"
	const kills, stepDowns = 3, 2

	type term struct {
		identity    string
		start, stop time.Time
	}
	var (
		mu    sync.Mutex
		terms []*term
	)
	type candidate struct {
		e        *election.Election
		leading  atomic.Bool
		starts   atomic.Int32
		stops    atomic.Int32
		stepDown chan struct{}
	}
	cands := make([]*candidate, 3)
	byIdentity := map[string]*candidate{}
	for i := range cands {
		c := &candidate{stepDown: make(chan struct{}, 1)}
		c.e = newElection(t, newPool(t, dsn), name,
			election.WithIdentity(fmt.Sprintf("candidate-%d", i)),
			election.WithRetryDelay(20*time.Millisecond))
		cands[i], byIdentity[c.e.Identity()] = c, c
	}
	watcher := newElection(t, admin, name, election.WithIdentity("observer"))

	obsCtx, stopObserving := context.WithCancel(t.Context())
	defer stopObserving()
	obs, err := watcher.Observe(obsCtx)
	if err != nil {
		t.Fatal(err)
	}
	if c := await(t, obs, 5*time.Second, "first observation"); c != (election.Candidate{}) {
		t.Fatalf("first observation: got %+v; want no leader", c)
	}
	var observed []election.Candidate
	// nextLeader waits for the observer to report a leader other than prev
	// (skipping "no leader" reports) and returns it.
	nextLeader := func(prev election.Candidate) (election.Candidate, time.Time) {
		t.Helper()
		for {
			c := await(t, obs, 5*time.Second, "observer")
			if c == (election.Candidate{}) {
				continue
			}
			observed = append(observed, c)
			if c == prev {
				t.Fatalf("observer reported %+v twice in a row", c)
			}
			return c, time.Now()
		}
	}

	runCtx, stopRunning := context.WithCancel(t.Context())
	defer stopRunning()
	runErrs := make(chan error, len(cands))
	started := make(chan *term, 100)
	for _, c := range cands {
		go func() {
			runErrs <- c.e.Run(runCtx, func(ctx context.Context) error {
				tm := &term{identity: c.e.Identity(), start: time.Now()}
				c.leading.Store(true)
				c.starts.Add(1)
				mu.Lock()
				terms = append(terms, tm)
				mu.Unlock()
				started <- tm
				select {
				case <-ctx.Done():
				case <-c.stepDown:
				}
				c.leading.Store(false)
				c.stops.Add(1)
				mu.Lock()
				tm.stop = time.Now()
				mu.Unlock()
				return nil
			})
		}()
	}
	leader, _ := nextLeader(election.Candidate{})
	if tm := await(t, started, 5*time.Second, "first term"); tm.identity != leader.Identity {
		t.Fatalf("the observer reports %s; the first term is %s's", leader.Identity, tm.identity)
	}
	awaitWaiters(t, admin, 2)

	// The sampler: at every sample the server shows exactly one session
	// holding the election lock, and the candidates' own flags show at most
	// one leader outside the inherent hand-over window (measured below from
	// the terms' timestamps, so only counted here).
	var samples, doubleFlags atomic.Int64
	sampleCtx, stopSampling := context.WithCancel(t.Context())
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for sampleCtx.Err() == nil {
			n, err := pgtest.CountAdvisoryLocks(sampleCtx, admin, "granted")
			if err != nil {
				if sampleCtx.Err() == nil {
					t.Errorf("sampling: %v", err)
				}
				return
			}
			if n != 1 {
				t.Errorf("sample %d: %d sessions hold the election lock; want 1", samples.Load(), n)
			}
			flags := 0
			for _, c := range cands {
				if c.leading.Load() {
					flags++
				}
			}
			if flags > 1 {
				doubleFlags.Add(1)
			}
			samples.Add(1)
			time.Sleep(2 * time.Millisecond) // the sampling rate, not a synchronisation
		}
	}()

	var failovers, handovers, observeLags []time.Duration
	for i := range kills + stepDowns {
		before := time.Now()
		if i < kills {
			pgtest.Terminate(t, admin, leader.PID)
		} else {
			byIdentity[leader.Identity].stepDown <- struct{}{}
		}
		next, seen := nextLeader(leader)
		if next.Identity == leader.Identity {
			t.Fatalf("step %d: %s leads again; want another candidate", i, next.Identity)
		}
		last := await(t, started, 5*time.Second, "next term")
		if last.identity != next.Identity {
			t.Fatalf("step %d: the observer reports %s; the next term is %s's", i, next.Identity, last.identity)
		}
		if i < kills {
			failovers = append(failovers, last.start.Sub(before))
		} else {
			handovers = append(handovers, last.start.Sub(before))
		}
		observeLags = append(observeLags, seen.Sub(last.start)) // negative: seen before fn started
		leader = next
		// The old leader campaigns again: two waiters, so that the next
		// change again hands the lock over with nobody in between.
		awaitWaiters(t, admin, 2)
	}
	stopSampling()
	<-sampled
	stopObserving()
	for range obs {
	}
	stopRunning()
	for range cands {
		if err := await(t, runErrs, 15*time.Second, "Run's return"); err != nil {
			t.Errorf("Run after its context was cancelled: %v; want nil", err)
		}
	}

	mu.Lock()
	defer mu.Unlock()
	var want []string
	// The double-leader window of a change: how long the old leader still
	// believed it led once the new one had started (negative: it had
	// stopped before). Stepping down stops first by construction; a
	// terminated session is noticed by its old leader about when the server
	// grants the lock to the next, so that window is inherent, and bounded.
	var windows []time.Duration
	window := time.Duration(-1 << 63)
	for i, tm := range terms {
		want = append(want, tm.identity)
		if i > 0 && i <= kills+stepDowns {
			windows = append(windows, terms[i-1].stop.Sub(tm.start))
			window = max(window, windows[len(windows)-1])
		}
	}
	var got []string
	for _, c := range observed {
		got = append(got, c.Identity)
	}
	if len(got) != 1+kills+stepDowns || !slices.Equal(got, want[:len(got)]) {
		t.Errorf("observed leaders %v; want %v, the terms in order", got, want)
	}
	for _, c := range cands {
		if s, p := c.starts.Load(), c.stops.Load(); s != p {
			t.Errorf("%s: started leading %d times, stopped %d times; want equal", c.e.Identity(), s, p)
		}
	}
	if window > time.Second {
		t.Errorf("two candidates believed they led for %v at once; want under 1s", window)
	}
	t.Logf("%d samples, %d with two leader flags up; double-leader windows %v (negative: none)",
		samples.Load(), doubleFlags.Load(), windows)
	t.Logf("failover after terminating the leader's session: %v", failovers)
	t.Logf("hand-over after stepping down: %v", handovers)
	t.Logf("observer lag after a new term started: %v", observeLags)
	for _, d := range failovers {
		if d > 2*time.Second {
			t.Errorf("failover took %v; want under 2s", d)
		}
	}
}

func TestElection_resignHandsOver(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	a := newElection(t, newPool(t, dsn), "handover", election.WithIdentity("a"))
	b := newElection(t, newPool(t, dsn), "handover", election.WithIdentity("b"))

	la := mustCampaign(t, a)
	if got, ok := mustLeader(t, b); !ok || got != la.Candidate() {
		t.Fatalf("Leader: got %+v, %v; want %+v", got, ok, la.Candidate())
	}
	if la.Identity() != "a" || la.Err() != nil || isClosed(la.Done()) {
		t.Fatalf("new leadership: identity %q, Err %v, Done closed %v; want a, nil, false", la.Identity(), la.Err(), isClosed(la.Done()))
	}
	if _, err := a.Campaign(t.Context()); !errors.Is(err, election.ErrCampaigning) {
		t.Errorf("Campaign while leading: %v; want ErrCampaigning", err)
	}
	waiting := campaignAsync(t.Context(), b)
	awaitWaiters(t, admin, 1)

	start := time.Now()
	if err := la.Resign(t.Context()); err != nil {
		t.Fatalf("Resign: %v", err)
	}
	r := await(t, waiting, 5*time.Second, "b's campaign")
	if r.err != nil {
		t.Fatalf("b's campaign: %v", r.err)
	}
	t.Logf("hand-over on Resign: %v", r.at.Sub(start))
	if !isClosed(la.Done()) || !errors.Is(la.Err(), advisorylock.ErrNotHeld) {
		t.Errorf("after Resign: Done closed %v, Err %v; want true, ErrNotHeld", isClosed(la.Done()), la.Err())
	}
	if err := la.Resign(t.Context()); err != nil {
		t.Errorf("second Resign: %v; want nil", err)
	}
	if got, ok := mustLeader(t, a); !ok || got != r.ld.Candidate() || got.Identity != "b" {
		t.Errorf("Leader: got %+v, %v; want %+v", got, ok, r.ld.Candidate())
	}
	if err := r.ld.Resign(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, ok := mustLeader(t, a); ok {
		t.Error("Leader after both resigned: somebody leads; want nobody")
	}
}

func TestElection_campaignCancel(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	a := newElection(t, newPool(t, dsn), "cancel", election.WithIdentity("a"))
	b := newElection(t, newPool(t, dsn), "cancel", election.WithIdentity("b"))
	la := mustCampaign(t, a)
	defer la.Resign(context.Background())

	ctx, cancel := context.WithCancel(t.Context())
	waiting := campaignAsync(ctx, b)
	awaitWaiters(t, admin, 1)
	start := time.Now()
	cancel()
	r := await(t, waiting, 5*time.Second, "cancelled campaign")
	if !errors.Is(r.err, context.Canceled) || r.ld != nil {
		t.Fatalf("cancelled campaign: %v, %v; want nil, context.Canceled", r.ld, r.err)
	}
	t.Logf("a cancelled campaign returned after %v", r.at.Sub(start))
	awaitWaiters(t, admin, 0)

	dctx, dcancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer dcancel()
	if _, err := b.Campaign(dctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("campaign past its deadline: %v; want context.DeadlineExceeded", err)
	}
	// The candidate can campaign again, and wins once a resigns.
	again := campaignAsync(t.Context(), b)
	awaitWaiters(t, admin, 1)
	if err := la.Resign(t.Context()); err != nil {
		t.Fatal(err)
	}
	if r := await(t, again, 5*time.Second, "campaign after a cancelled one"); r.err != nil {
		t.Fatal(r.err)
	} else if err := r.ld.Resign(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestElection_campaignSurvivesLostConnection ends the session of a waiting
// candidate: a wait holds nothing, so the campaign waits again on a fresh
// session, and wins when the leader resigns.
func TestElection_campaignSurvivesLostConnection(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	a := newElection(t, newPool(t, dsn), "dies", election.WithIdentity("a"))
	b := newElection(t, newPool(t, dsn), "dies", election.WithIdentity("b"))
	la := mustCampaign(t, a)

	waiting := campaignAsync(t.Context(), b)
	awaitWaiters(t, admin, 1)
	hs, err := advisorylock.New(admin, "dies").Holders(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 2 || hs[1].Granted || hs[1].ApplicationName != "b" {
		t.Fatalf("holders: %+v; want a holding, b waiting", hs)
	}
	first := hs[1].PID
	pgtest.Terminate(t, admin, first)
	// b waits again, on another session.
	for {
		awaitWaiters(t, admin, 1)
		hs, err = advisorylock.New(admin, "dies").Holders(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(hs) == 2 && !hs[1].Granted && hs[1].PID != first && hs[1].ApplicationName == "b" {
			break
		}
	}
	select {
	case r := <-waiting:
		t.Fatalf("campaign returned (%v, %v) while a led; want it waiting", r.ld, r.err)
	default:
	}
	if c, _ := mustLeader(t, b); c != la.Candidate() {
		t.Errorf("leader: %+v; want a still, %+v", c, la.Candidate())
	}
	if err := la.Resign(t.Context()); err != nil {
		t.Fatal(err)
	}
	r := await(t, waiting, awaitTimeout, "campaign after its waiting session ended")
	if r.err != nil {
		t.Fatalf("campaign after its waiting session ended: %v; want b to lead", r.err)
	}
	if c, _ := mustLeader(t, a); c != r.ld.Candidate() || c.Identity != "b" {
		t.Errorf("leader: %+v; want b, %+v", c, r.ld.Candidate())
	}
	if err := r.ld.Resign(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestElection_loss terminates the leader's session: the leadership ends
// with ErrLockLost, Resign confirms the release, and the candidate can
// campaign again.
func TestElection_loss(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	a := newElection(t, newPool(t, dsn), "loss", election.WithIdentity("a"))
	la := mustCampaign(t, a)

	start := time.Now()
	pgtest.Terminate(t, admin, la.Candidate().PID)
	await(t, la.Done(), 5*time.Second, "Done after the session ended")
	t.Logf("loss noticed after %v", time.Since(start))
	if !errors.Is(la.Err(), advisorylock.ErrLockLost) {
		t.Errorf("Err after the session ended: %v; want ErrLockLost", la.Err())
	}
	if err := la.Resign(t.Context()); err != nil {
		t.Errorf("Resign after a loss: %v; want nil (the release is confirmed)", err)
	}
	lb := mustCampaign(t, a)
	if err := lb.Resign(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestElection_resignRetry: a Resign that fails still ends the leadership,
// and a retry confirms the release.
func TestElection_resignRetry(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	a := newElection(t, newPool(t, dsn), "retry", election.WithIdentity("a"))
	la := mustCampaign(t, a)

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := la.Resign(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Resign with a cancelled context: %v; want context.Canceled", err)
	}
	if !isClosed(la.Done()) {
		t.Error("Done after a failed Resign: open; want closed")
	}
	if err := la.Resign(t.Context()); err != nil {
		t.Fatalf("Resign retried: %v; want nil", err)
	}
	if err := la.Resign(t.Context()); err != nil {
		t.Errorf("Resign once more: %v; want nil", err)
	}
	awaitHolders(t, admin, 0)
}

// TestElection_resignEndsStaleSession: the unlock cannot reach the server
// (a silent network, no lease), so the old session keeps the lock; the
// retried Resign, over another connection, ends that session and the waiting
// candidate wins.
func TestElection_resignEndsStaleSession(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	p := newProxy(t)
	a := newElection(t, newPool(t, dsn, pgtest.ViaProxy(p, true)), "stale",
		election.WithIdentity("a"), election.WithLease(0))
	b := newElection(t, newPool(t, dsn), "stale", election.WithIdentity("b"))
	la := mustCampaign(t, a)
	waiting := campaignAsync(t.Context(), b)
	awaitWaiters(t, admin, 1)

	p.Freeze()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if err := la.Resign(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Resign over a silent network: %v; want context.DeadlineExceeded", err)
	}
	if c, ok := mustLeader(t, b); !ok || c != la.Candidate() {
		t.Fatalf("leader after the failed Resign: %+v, %v; want a's stale session %+v", c, ok, la.Candidate())
	}
	start := time.Now()
	if err := la.Resign(t.Context()); err != nil {
		t.Fatalf("Resign retried: %v; want nil", err)
	}
	r := await(t, waiting, 5*time.Second, "b's campaign")
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Logf("the retried Resign handed over after %v", r.at.Sub(start))
	if err := r.ld.Resign(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestElection_leaseEndsSilentLeader: the leader's network goes silent. It
// stops believing it leads within two thirds of the lease; the server ends its
// session after the lease, and the waiting candidate wins, after the old
// leader has stepped down.
func TestElection_leaseEndsSilentLeader(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	p := newProxy(t)
	const lease = 1500 * time.Millisecond
	a := newElection(t, newPool(t, dsn, pgtest.ViaProxy(p, false)), "lease",
		election.WithIdentity("a"), election.WithLease(lease))
	b := newElection(t, newPool(t, dsn), "lease",
		election.WithIdentity("b"), election.WithLease(lease))
	la := mustCampaign(t, a)
	waiting := campaignAsync(t.Context(), b)
	awaitWaiters(t, admin, 1)

	p.Freeze()
	start := time.Now()
	await(t, la.Done(), 3*lease, "a's Done over a silent network")
	stepped := time.Since(start)
	r := await(t, waiting, 3*lease, "b's campaign")
	if r.err != nil {
		t.Fatal(r.err)
	}
	won := r.at.Sub(start)
	t.Logf("silent network: the old leader stepped down after %v, the new one won after %v (lease %v)", stepped, won, lease)
	if !errors.Is(la.Err(), advisorylock.ErrLockLost) {
		t.Errorf("a's Err: %v; want ErrLockLost", la.Err())
	}
	if stepped > 2*lease/3+300*time.Millisecond {
		t.Errorf("the old leader stepped down after %v; want within about %v", stepped, 2*lease/3)
	}
	if won < stepped {
		t.Errorf("the new leader won %v before the old one stepped down", stepped-won)
	}
	p.Thaw()
	if err := la.Resign(t.Context()); err != nil {
		t.Errorf("Resign once the network is back: %v; want nil", err)
	}
	if err := r.ld.Resign(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestElection_identity(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	pool := newPool(t, dsn)
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	def := newElection(t, pool, "identity")
	if want := host + ":" + strconv.Itoa(os.Getpid()); def.Identity() != want && len(want) <= 63 {
		t.Errorf("default identity %q; want %q", def.Identity(), want)
	}
	for _, e := range []*election.Election{def, newElection(t, pool, "identity", election.WithIdentity("worker-7 (eu-west)"))} {
		ld := mustCampaign(t, e)
		if c, ok := mustLeader(t, e); !ok || c.Identity != e.Identity() || c != ld.Candidate() {
			t.Errorf("Leader: %+v, %v; want %+v with identity %q", c, ok, ld.Candidate(), e.Identity())
		}
		if err := ld.Resign(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	// The identity stays on the Election's own sessions.
	var app string
	if err := pool.QueryRow(t.Context(), "show application_name").Scan(&app); err != nil {
		t.Fatal(err)
	}
	if app != "" {
		t.Errorf("application_name on the caller's pool: %q; want it untouched, empty", app)
	}
}

// TestElection_close: Close resigns the leadership (a waiting candidate
// wins), aborts a campaign under way, ends observers, and refuses later use.
func TestElection_close(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	a := newElection(t, newPool(t, dsn), "close", election.WithIdentity("a"))
	b := newElection(t, newPool(t, dsn), "close", election.WithIdentity("b"))
	c := newElection(t, newPool(t, dsn), "close", election.WithIdentity("c"))

	la := mustCampaign(t, a)
	obs, err := a.Observe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := await(t, obs, 5*time.Second, "observer"); got != la.Candidate() {
		t.Fatalf("observed %+v; want %+v", got, la.Candidate())
	}
	// b queues first, so that a's resignation hands over to b.
	bWaiting := campaignAsync(t.Context(), b)
	awaitWaiters(t, admin, 1)
	cWaiting := campaignAsync(t.Context(), c)
	awaitWaiters(t, admin, 2)

	if err := a.Close(t.Context()); err != nil {
		t.Fatalf("Close while leading: %v", err)
	}
	if !errors.Is(la.Err(), advisorylock.ErrNotHeld) {
		t.Errorf("Err after Close: %v; want ErrNotHeld", la.Err())
	}
	if _, open := <-obs; open {
		t.Error("observer channel open after Close; want closed")
	}
	rb := await(t, bWaiting, 5*time.Second, "b's campaign")
	if rb.err != nil {
		t.Fatalf("b's campaign after a closed: %v", rb.err)
	}
	if err := c.Close(t.Context()); err != nil {
		t.Fatalf("Close while campaigning: %v", err)
	}
	if r := await(t, cWaiting, 5*time.Second, "c's campaign"); !errors.Is(r.err, election.ErrClosed) {
		t.Errorf("campaign ended by Close: %v; want ErrClosed", r.err)
	}
	awaitWaiters(t, admin, 0)
	if _, err := a.Campaign(t.Context()); !errors.Is(err, election.ErrClosed) {
		t.Errorf("Campaign after Close: %v; want ErrClosed", err)
	}
	if _, err := a.Observe(t.Context()); !errors.Is(err, election.ErrClosed) {
		t.Errorf("Observe after Close: %v; want ErrClosed", err)
	}
	if err := a.Close(t.Context()); err != nil {
		t.Errorf("second Close: %v; want nil", err)
	}
	if err := rb.ld.Resign(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestElection_closeEndsRun: Close resigns the leadership Run holds; fn's
// context ends and Run returns ErrClosed.
func TestElection_closeEndsRun(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	a := newElection(t, newPool(t, dsn), "closerun", election.WithIdentity("a"))
	started := make(chan struct{})
	causes := make(chan error, 1)
	done := make(chan error, 1)
	go func() {
		done <- a.Run(t.Context(), func(ctx context.Context) error {
			close(started)
			<-ctx.Done()
			causes <- context.Cause(ctx)
			return nil
		})
	}()
	await(t, started, 5*time.Second, "fn")
	if err := a.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if cause := await(t, causes, 5*time.Second, "fn's context"); !errors.Is(cause, advisorylock.ErrNotHeld) {
		t.Errorf("fn's context cause: %v; want ErrNotHeld (resigned)", cause)
	}
	if err := await(t, done, 5*time.Second, "Run's return"); !errors.Is(err, election.ErrClosed) {
		t.Errorf("Run: %v; want ErrClosed", err)
	}
}

// TestElection_observe follows one candidate through win, resign, win and
// loss. Polling is made rare, so the prompt reports come from announcements.
func TestElection_observe(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	a := newElection(t, newPool(t, dsn), "observe", election.WithIdentity("a"))
	watcher := newElection(t, admin, "observe", election.WithIdentity("watcher"),
		election.WithPollInterval(time.Minute))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	obs, err := watcher.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	none := election.Candidate{}
	if got := await(t, obs, 5*time.Second, "first observation"); got != none {
		t.Fatalf("first observation: %+v; want no leader", got)
	}
	// The observer listens before it asks who leads: the server shows it.
	awaitListeners(t, admin, 1)

	var lags []time.Duration
	expect := func(want election.Candidate, since time.Time) {
		t.Helper()
		got := await(t, obs, 5*time.Second, "observer")
		if got != want {
			t.Fatalf("observed %+v; want %+v", got, want)
		}
		lags = append(lags, time.Since(since))
	}
	start := time.Now()
	la := mustCampaign(t, a)
	expect(la.Candidate(), start)
	start = time.Now()
	if err := la.Resign(t.Context()); err != nil {
		t.Fatal(err)
	}
	expect(none, start)
	start = time.Now()
	lb := mustCampaign(t, a)
	expect(lb.Candidate(), start)
	// A loss with nobody waiting: the candidate's Resign confirms it and
	// announces the change.
	start = time.Now()
	pgtest.Terminate(t, admin, lb.Candidate().PID)
	<-lb.Done()
	if err := lb.Resign(t.Context()); err != nil {
		t.Fatal(err)
	}
	expect(none, start)
	t.Logf("observer lags: %v", lags)

	cancel()
	if _, open := <-obs; open {
		t.Error("observer channel open after its context ended; want closed")
	}
}

// TestElection_runNeverLedNeverStops: a candidate that never leads never
// sees its function called, so it never sees a stopped-leading either.
func TestElection_runNeverLedNeverStops(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	a := newElection(t, newPool(t, dsn), "never", election.WithIdentity("a"))
	b := newElection(t, newPool(t, dsn), "never", election.WithIdentity("b"))
	la := mustCampaign(t, a)
	defer la.Resign(context.Background())

	var calls atomic.Int32
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- b.Run(ctx, func(context.Context) error { calls.Add(1); return nil })
	}()
	awaitWaiters(t, admin, 1)
	cancel()
	if err := await(t, done, 5*time.Second, "Run's return"); err != nil {
		t.Errorf("Run: %v; want nil", err)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("fn called %d times by a candidate that never led; want 0", n)
	}
}

// TestElection_runCampaignsAgainAfterLoss: the function's context reports
// the loss; Run campaigns again and calls the function once more.
func TestElection_runCampaignsAgainAfterLoss(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	a := newElection(t, newPool(t, dsn), "again", election.WithIdentity("a"),
		election.WithRetryDelay(10*time.Millisecond))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	causes := make(chan error, 2)
	started := make(chan struct{}, 2)
	done := make(chan error, 1)
	go func() {
		done <- a.Run(ctx, func(ctx context.Context) error {
			started <- struct{}{}
			<-ctx.Done()
			causes <- context.Cause(ctx)
			return context.Cause(ctx)
		})
	}()
	await(t, started, 5*time.Second, "first term")
	c, ok := mustLeader(t, a)
	if !ok {
		t.Fatal("no leader while fn runs")
	}
	pgtest.Terminate(t, admin, c.PID)
	if cause := await(t, causes, 5*time.Second, "fn's context after the loss"); !errors.Is(cause, advisorylock.ErrLockLost) {
		t.Errorf("cause: %v; want ErrLockLost", cause)
	}
	await(t, started, 5*time.Second, "second term")
	cancel()
	if err := await(t, done, 5*time.Second, "Run's return"); err != nil {
		t.Errorf("Run: %v; want nil", err)
	}
	if cause := <-causes; !errors.Is(cause, context.Canceled) {
		t.Errorf("cause at the end: %v; want context.Canceled", cause)
	}
}

// TestElection_runFnError: fn's own error ends Run, after resigning.
func TestElection_runFnError(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	a := newElection(t, newPool(t, dsn), "fnerr", election.WithIdentity("a"))
	boom := errors.New("boom")
	err := a.Run(t.Context(), func(context.Context) error { return boom })
	if !errors.Is(err, boom) {
		t.Errorf("Run: %v; want boom", err)
	}
	awaitHolders(t, admin, 0)

	// A Run alongside a campaign of the same candidate is refused.
	ld := mustCampaign(t, a)
	if err := a.Run(t.Context(), func(context.Context) error { return nil }); !errors.Is(err, election.ErrCampaigning) {
		t.Errorf("Run while leading: %v; want ErrCampaigning", err)
	}
	if err := ld.Resign(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestElection_runPanicResigns: a panicking fn releases the leadership
// before the panic goes on.
func TestElection_runPanicResigns(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	admin := newPool(t, dsn)
	a := newElection(t, newPool(t, dsn), "panic", election.WithIdentity("a"))
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v; want boom", r)
			}
		}()
		_ = a.Run(t.Context(), func(context.Context) error { panic("boom") })
	}()
	awaitHolders(t, admin, 0)
	ld := mustCampaign(t, a)
	if err := ld.Resign(t.Context()); err != nil {
		t.Fatal(err)
	}
}
