package election

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
)

// Bounds on the Election's own housekeeping.
const (
	// electionMaxConns sizes the Election's pool: one connection for the
	// campaign or leadership, two for short queries (Leader, announcements,
	// setting up observers, confirming a release).
	electionMaxConns = 3
	// releaseTimeout bounds a resignation that Run or Campaign runs on a
	// context of their own.
	releaseTimeout = 10 * time.Second
	// closeTimeout bounds the goodbye to a connection being closed.
	closeTimeout = time.Second
	// poolIdle is how long the Election's pool keeps an idle connection,
	// at most.
	poolIdle = 250 * time.Millisecond
	// announceTimeout bounds the NOTIFY that tells observers of a change.
	announceTimeout = 2 * time.Second
	// terminateWait is how long the server is asked to wait for a stale
	// session of this candidate to exit (pg_terminate_backend's timeout).
	terminateWait = 5 * time.Second
)

// An Election is one candidate in a leader election: see the package
// documentation. Its methods are safe for concurrent use, but as one
// candidate it campaigns or leads once at a time ([ErrCampaigning]). The zero
// Election is not usable; create one with [New] and release it with
// [Election.Close].
type Election struct {
	name    string
	key     advisorylock.Key
	cfg     config
	err     error               // bad input, reported by every call (see check)
	pool    *pgxpool.Pool       // the Election's own pool; nil with bad input
	m       *advisorylock.Mutex // the election lock, on pool
	channel string              // where leaders announce themselves (NOTIFY)

	halt   context.Context // done once Close starts: ends campaigns, observers
	cancel context.CancelFunc

	mu          sync.Mutex
	closed      bool        // Close has started
	stopped     bool        // Close waits for background work: start no more
	campaigning bool        // a Campaign is under way
	leading     *Leadership // the last leadership won, until Close
	campaigns   sync.WaitGroup
	background  sync.WaitGroup // observers and announcements

	closeOnce sync.Once
	closeErr  error
}

// New returns a candidate in the election called name, on the database pool
// connects to. It does no I/O: the Election's own pool, configured like pool
// (see the package documentation), connects when first needed. New never
// fails: a nil pool, an empty name or an invalid option is reported by every
// call on the Election, before any round trip, as an error matching
// [advisorylock.ErrInvalidArgument]. Close must be called to release the pool.
func New(pool *pgxpool.Pool, name string, opts ...Option) *Election {
	e := &Election{name: name, key: advisorylock.KeyFromName(name), cfg: newConfig(opts)}
	e.channel = "advisorylock.election." + e.key.String()
	e.halt, e.cancel = context.WithCancel(context.Background())
	switch {
	case e.cfg.err != nil:
		e.err = e.cfg.err
	case pool == nil:
		e.err = invalid("nil pool")
	case name == "":
		e.err = invalid("empty election name")
	}
	if e.err != nil {
		return e
	}
	own, err := newElectionPool(pool, e.cfg)
	if err != nil {
		e.err = fmt.Errorf("creating its pool: %w", err)
		return e
	}
	e.pool = own
	e.m = advisorylock.New(own, name, advisorylock.WithKeepalive(e.cfg.lease/3),
		advisorylock.WithHooks(e.cfg.hooks...))
	return e
}

// newElectionPool opens the Election's own pool: pool's configuration with
// the identity as application_name, a few connections at most and, with a
// lease, the server-side half of the lease on every session.
func newElectionPool(pool *pgxpool.Pool, cfg config) (*pgxpool.Pool, error) {
	pc := pool.Config() // a copy
	if pc.ConnConfig.RuntimeParams == nil {
		pc.ConnConfig.RuntimeParams = map[string]string{}
	}
	pc.ConnConfig.RuntimeParams["application_name"] = cfg.identity
	pc.MaxConns = electionMaxConns
	pc.MinConns, pc.MinIdleConns = 0, 0
	if cfg.lease > 0 {
		timeout := strconv.FormatInt(int64((cfg.lease+time.Millisecond-1)/time.Millisecond), 10)
		userAfterConnect := pc.ConnConfig.AfterConnect
		// Set after connecting rather than as a startup parameter, which a
		// connection pooler in front of the server may refuse, and by the
		// driver's own hook, which runs for the lock sessions too. The
		// statement keeps the setting for the session (is_local = false);
		// timeout is digits only.
		pc.ConnConfig.AfterConnect = func(ctx context.Context, c *pgconn.PgConn) error {
			if userAfterConnect != nil {
				if err := userAfterConnect(ctx, c); err != nil {
					return err
				}
			}
			return c.Exec(ctx, "select pg_catalog.set_config('idle_session_timeout', '"+timeout+"', false)").Close()
		}
	}
	// The candidate's lock waits and holds are on lock sessions; the pool
	// serves short queries (announcements, Leader, confirming a release):
	// its idle connections close within half a second, so that a candidate
	// costs one server session, and before the server's idle_session_timeout
	// would end them, sparing its log a FATAL line each.
	idle := poolIdle
	if cfg.lease > 0 {
		idle = min(idle, cfg.lease/3)
	}
	pc.MaxConnIdleTime = min(pc.MaxConnIdleTime, idle)
	if pc.MaxConnIdleTime <= 0 {
		pc.MaxConnIdleTime = idle
	}
	pc.HealthCheckPeriod = min(pc.HealthCheckPeriod, idle)
	if pc.HealthCheckPeriod <= 0 {
		pc.HealthCheckPeriod = idle
	}
	return pgxpool.NewWithConfig(context.Background(), pc)
}

// Name returns the election's name.
func (e *Election) Name() string { return e.name }

// Key returns the key of the election lock.
func (e *Election) Key() advisorylock.Key { return e.key }

// Identity returns the candidate's identity, as others read it.
func (e *Election) Identity() string { return e.cfg.identity }

// String describes the election for logs: its quoted name and the identity.
func (e *Election) String() string {
	return "election " + strconv.Quote(e.name) + " as " + strconv.Quote(e.cfg.identity)
}

// Campaign makes the candidate leader, blocking, in the server's queue for the
// election lock, until it leads, ctx is done or the Election is closed. The
// Leadership lasts until [Leadership.Resign], Close or its loss
// ([Leadership.Done]). It fails with ctx's error ([context.Canceled],
// [context.DeadlineExceeded]), [ErrClosed], [ErrCampaigning] at once while
// another campaign or leadership of e is under way, the driver's error when
// the server cannot be reached at first, [advisorylock.ErrPooler],
// [advisorylock.ErrStandby] or [advisorylock.ErrInvalidArgument]. A wait that
// loses its session (a terminated backend, a restart, a failover, a network
// gone silent) waits again on a fresh one, within ctx, as
// [advisorylock.Mutex.Lock] does. A grant that arrives once ctx is done is
// resigned, not returned. A previous leadership whose release was never
// confirmed is confirmed first (see [Leadership.Resign]).
func (e *Election) Campaign(ctx context.Context) (*Leadership, error) {
	ld, err := e.win(ctx)
	if err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		// The grant arrived as ctx ended: the caller no longer wants it.
		return nil, e.giveBack(ctx, "campaign", ld, ctx.Err())
	}
	e.announce()
	return ld, nil
}

// giveBack resigns a leadership won as the caller stopped wanting it, and
// returns the error of op saying why: cause, then the resignation's failure
// if it failed (the next campaign then confirms the release).
func (e *Election) giveBack(ctx context.Context, op string, ld *Leadership, cause error) error {
	if err := ld.resign(ctx); err != nil {
		return e.errorf(op, cause, err)
	}
	return e.errorf(op, cause)
}

// win is Campaign without its last step: the leadership it returns may have
// been won as ctx ended, and is not announced yet.
func (e *Election) win(ctx context.Context) (*Leadership, error) {
	if err := e.check("campaign"); err != nil {
		return nil, err
	}
	e.mu.Lock()
	switch {
	case e.closed:
		e.mu.Unlock()
		return nil, e.errorf("campaign", ErrClosed)
	case e.campaigning || (e.leading != nil && e.leading.Err() == nil):
		e.mu.Unlock()
		return nil, e.errorf("campaign", ErrCampaigning)
	}
	prev := e.leading
	e.campaigning = true
	e.campaigns.Add(1)
	e.mu.Unlock()
	defer e.campaigns.Done()

	ld, err := e.campaign(ctx, prev)

	e.mu.Lock()
	e.campaigning = false
	closed := e.closed
	if err == nil && !closed {
		e.leading = ld
	}
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if closed {
		// Close started while the grant was on its way: give it back.
		return nil, e.giveBack(ctx, "campaign", ld, ErrClosed)
	}
	return ld, nil
}

// campaign confirms the previous leadership's release, then waits for the
// lock, on a context that Close also cancels.
func (e *Election) campaign(ctx context.Context, prev *Leadership) (*Leadership, error) {
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(e.halt, func() { cancel(ErrClosed) })
	defer stop()
	if prev != nil {
		if err := prev.Resign(cctx); err != nil {
			if errors.Is(context.Cause(cctx), ErrClosed) {
				return nil, e.errorf("campaign", ErrClosed)
			}
			return nil, e.errorf("campaign", errPrevRelease, err)
		}
	}
	l, err := e.m.Lock(cctx)
	if err != nil {
		if errors.Is(context.Cause(cctx), ErrClosed) && ctx.Err() == nil {
			return nil, e.errorf("campaign", ErrClosed)
		}
		return nil, e.relabel("campaign", err)
	}
	return &Leadership{e: e, lock: l, cand: Candidate{Identity: e.cfg.identity, PID: l.PID()}}, nil
}

// announce tells observers, in the background, that the leadership changed.
// Observers poll as well, so a failed announcement only delays them.
func (e *Election) announce() {
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		return
	}
	e.background.Add(1)
	e.mu.Unlock()
	go func() {
		defer e.background.Done()
		ctx, cancel := context.WithTimeout(context.Background(), announceTimeout)
		defer cancel()
		_, _ = e.pool.Exec(ctx, "select pg_catalog.pg_notify($1, $2)", e.channel, e.cfg.identity)
	}()
}

// A Candidate is a participant in an election as the server sees it: the
// leader, as [Election.Leader] and [Election.Observe] report it. The zero
// Candidate stands for "no leader".
type Candidate struct {
	// Identity is the candidate's identity: its session's application_name.
	Identity string
	// PID is the server process of the candidate's session holding the
	// election lock. It tells apart two leaderships of one identity.
	PID int32
}

// Leader reports who leads now, as the server shows it: the session holding
// the election lock (a Mutex of the same name counts, and so does a silent
// leader until its lease runs out) and its identity. ok is false when nobody
// leads. It blocks for one query, and fails with the query's error (ctx's
// when ctx ends it), [ErrClosed] or [advisorylock.ErrInvalidArgument].
func (e *Election) Leader(ctx context.Context) (c Candidate, ok bool, err error) {
	if err := e.check("leader"); err != nil {
		return Candidate{}, false, err
	}
	return e.leader(ctx)
}

func (e *Election) leader(ctx context.Context) (c Candidate, ok bool, err error) {
	classid, objid, subid := lockTag(e.key)
	err = e.pool.QueryRow(ctx, leaderSQL, classid, objid, subid).Scan(&c.PID, &c.Identity)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Candidate{}, false, nil
	case err != nil:
		return Candidate{}, false, e.errorf("leader", err)
	}
	return c, true, nil
}

// leaderSQL finds the session holding the election lock, and its
// application_name. The join is inner: pg_locks and pg_stat_activity are read
// at slightly different instants, and a session that is exiting can still
// show in pg_locks after its pg_stat_activity row is gone. Such a session
// leads no more (its locks are going), and reporting it would report a leader
// without identity.
const leaderSQL = `select l.pid, a.application_name
from pg_catalog.pg_locks l join pg_catalog.pg_stat_activity a on a.pid = l.pid
where l.locktype = 'advisory' and l.granted
	and l.database = (select oid from pg_catalog.pg_database where datname = pg_catalog.current_database())
	and l.classid::int8 = $1 and l.objid::int8 = $2 and l.objsubid = $3
order by l.pid
limit 1`

// Close ends the candidacy: it aborts a campaign under way (which fails with
// [ErrClosed]), resigns the leadership, closes the observers' channels and
// the Election's pool. ctx bounds the resignation; an error means its release
// could not be confirmed (the lease then ends the session). Later calls return
// the first call's result. It does not wait for Run, whose function sees its
// context cancelled; Close on a nil or bad Election returns nil.
func (e *Election) Close(ctx context.Context) error {
	if e == nil || e.pool == nil {
		return nil
	}
	e.closeOnce.Do(func() { e.closeErr = e.close(ctx) })
	return e.closeErr
}

func (e *Election) close(ctx context.Context) error {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.cancel()
	e.campaigns.Wait()
	e.mu.Lock()
	ld := e.leading
	e.mu.Unlock()
	var err error
	if ld != nil {
		err = ld.Resign(ctx)
	}
	e.mu.Lock()
	e.stopped = true
	e.mu.Unlock()
	e.background.Wait()
	e.pool.Close()
	return err
}
