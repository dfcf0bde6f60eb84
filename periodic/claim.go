package periodic

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/advisorylock/advisorylock"
)

// A Claim is a run begun by [Job.Begin], under a lock its caller holds: its
// start is recorded. End it with [Claim.End] while still holding the lock. A
// Claim is safe for concurrent use.
type Claim struct {
	j    *Job
	lock *advisorylock.Lock
	pid  int32 // the lock's session when the run began
	prev Status

	mu    sync.Mutex
	run   Run  // guarded by mu once End runs
	ended bool // End was called
}

var (
	errLockNotHeld = errors.New("the server shows the lock no longer held by its session")
	errSuperseded  = errors.New("a later run has begun")
)

// Begin begins a run under l, the job's lock ([Job.Mutex]), which the caller
// holds: if a run is due, it records the run's start and returns its Claim;
// the caller then does the work and ends the run with [Claim.End] before
// releasing l. Checking that a run is due and recording its start are one
// statement, run under the lock, on the server's clock: two processes never
// both begin a run within the period. Begin blocks for one round trip; the
// first in a process checks the runs table first (one more), and creates it
// if it is missing (a transaction of a few more).
//
// When no run is due it returns a *[NotDueError] (matching [ErrNotDue]) and
// leaves l held. It fails with an error matching
// [advisorylock.ErrInvalidArgument] when l is nil, in shared mode or the lock
// of another name, [advisorylock.ErrLockLost] or [advisorylock.ErrNotHeld]
// when l is no longer held (also when the server shows it lost before its
// holder noticed), an error matching [advisorylock.ErrPrivilege] (a
// *[advisorylock.PrivilegeError] naming the role, the privilege and the
// object), an error saying the schema does not exist, or the driver's error
// (ctx's when ctx ends it).
func (j *Job) Begin(ctx context.Context, l *advisorylock.Lock) (*Claim, error) {
	if err := j.check("begin"); err != nil {
		return nil, err
	}
	switch {
	case l == nil:
		return nil, j.errorf("begin", invalid("nil Lock"))
	case l.Mutex().Key() != j.key:
		return nil, j.errorf("begin", invalid("%v is not the job's lock (key %v)", l.Mutex(), j.key))
	case l.Mutex().Mode() != advisorylock.ModeExclusive:
		return nil, j.errorf("begin", invalid("a shared lock would let runs overlap"))
	}
	if err := l.Err(); err != nil {
		return nil, j.errorf("begin", err)
	}
	pid := l.PID()
	classid, objid, subid := lockTag(j.key)
	var (
		now     time.Time
		held    bool
		token   *int64
		started *time.Time
		rec     recordColumns
	)
	err := j.withTable(ctx, func() error {
		return j.pool.QueryRow(ctx, j.sql.begin, j.name, j.cfg.identity,
			micros(j.period), micros(j.cfg.minSpacing), pid, classid, objid, subid).
			Scan(append([]any{&now, &held, &token, &started}, rec.dest()...)...)
	})
	if err != nil {
		return nil, j.errorf("begin", err)
	}
	prev := Status{Now: now}
	prev.Last, prev.LastSuccess = rec.runs()
	prev.Due = j.due(prev)
	switch {
	case !held:
		return nil, j.errorf("begin", advisorylock.ErrLockLost, errLockNotHeld)
	case token == nil:
		return nil, j.errorf("begin", &NotDueError{Status: prev})
	}
	return &Claim{
		j: j, lock: l, pid: pid, prev: prev,
		run: Run{Token: *token, StartedAt: *started, By: j.cfg.identity},
	}, nil
}

// micros returns d in whole microseconds, rounded up: the resolution of the
// server's timestamps.
func micros(d time.Duration) int64 {
	return int64((d + time.Microsecond - 1) / time.Microsecond)
}

// Run returns the run as begun: its token, its start on the server's clock
// and this process's identity; once End has recorded it, also how it ended.
func (c *Claim) Run() Run {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.run
}

// Previous returns the job's record as it was before this run began.
func (c *Claim) Previous() Status { return c.prev }

// End records how the run ended, blocking for one round trip, and must be
// called while the lock is still held: err nil records a success, anything
// else a failure (see [Run.Failure]; the text of err itself is recorded only
// for a [Failure]). A success counts only if the lock is still held, by the
// session that held it at Begin, when it is recorded: otherwise the run is
// recorded as failed ("lock lost"), or left as it is if a later run has begun,
// and End returns an error matching [advisorylock.ErrLockLost] (or
// [advisorylock.ErrNotHeld], for a lock the caller released). A run whose end
// cannot be recorded (End fails, or is never called) does not count either:
// the next attempt anywhere runs again. End returns nil when the outcome was
// recorded as given, the driver's error (ctx's when ctx ends it), or, called
// a second time, an error matching [advisorylock.ErrInvalidArgument]. End
// does not release the lock.
func (c *Claim) End(ctx context.Context, err error) error {
	if c == nil {
		return &advisorylock.Error{Op: "end", Err: invalid("nil Claim")}
	}
	j := c.j
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return j.errorf("end", invalid("run #%d already ended", c.run.Token))
	}
	c.ended = true
	var failure *string
	var lockErr error
	switch {
	case err != nil:
		f := describeFailure(err)
		failure = &f
	case c.lock.Err() != nil:
		lockErr = c.lock.Err()
		f := failLost
		failure = &f
	}
	classid, objid, subid := lockTag(j.key)
	var counted bool
	var finished time.Time
	qerr := j.pool.QueryRow(ctx, j.sql.end, j.name, c.run.Token, failure, c.pid, classid, objid, subid).
		Scan(&counted, &finished)
	switch {
	case errors.Is(qerr, pgx.ErrNoRows):
		return j.errorf("end", advisorylock.ErrLockLost, fmt.Errorf("run #%d: %w", c.run.Token, errSuperseded))
	case qerr != nil:
		j.tbl.Forget(qerr)
		return j.errorf("end", qerr)
	}
	c.run.FinishedAt = finished
	switch {
	case lockErr != nil:
		c.run.Failure = failLost
		return j.errorf("end", lockErr)
	case failure != nil:
		c.run.Failure = *failure
	case !counted:
		c.run.Failure = failLost
		return j.errorf("end", advisorylock.ErrLockLost, errLockNotHeld)
	}
	return nil
}
