package election

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/advisorylock/advisorylock"
)

// A Leadership is a candidate's term as leader, returned by
// [Election.Campaign]. It is safe for concurrent use.
type Leadership struct {
	e    *Election
	lock *advisorylock.Lock
	cand Candidate

	mu       sync.Mutex // serializes Resign
	unlocked bool       // Resign has tried pg_advisory_unlock
	released bool       // the server is known to hold nothing for it
}

// Done returns a channel that is closed when the leadership ends: resigned,
// closed, or lost. A session the server ended is noticed within moments, a
// silent network within two thirds of the lease ([WithLease]).
func (ld *Leadership) Done() <-chan struct{} { return ld.lock.Done() }

// Err returns nil while the candidate leads. Once Done is closed, it returns
// an error matching [advisorylock.ErrLockLost] if the leadership was lost, or
// [advisorylock.ErrNotHeld] if it was resigned.
func (ld *Leadership) Err() error { return ld.lock.Err() }

// Identity returns the leader's identity.
func (ld *Leadership) Identity() string { return ld.cand.Identity }

// Candidate returns the leader as [Election.Leader] reports it while it leads:
// its identity and its session's server process.
func (ld *Leadership) Candidate() Candidate { return ld.cand }

// Resign gives up the leadership, so that a waiting candidate can win. It
// blocks for one round trip, more when the unlock fails and the release must
// be confirmed from another session (see the package documentation). It
// returns nil once the release is confirmed, then on every later call;
// otherwise an error (ctx's when ctx ended it), and may be called again.
// Whatever it returns, the candidate no longer leads (Done is closed).
func (ld *Leadership) Resign(ctx context.Context) error {
	if ld == nil {
		return &advisorylock.Error{Op: "resign", Err: invalid("nil Leadership")}
	}
	ld.mu.Lock()
	defer ld.mu.Unlock()
	if ld.released {
		return nil
	}
	var unlockErr error
	if !ld.unlocked {
		ld.unlocked = true
		if unlockErr = ld.lock.Unlock(ctx); unlockErr == nil {
			ld.released = true
			ld.e.announce()
			return nil
		}
	}
	if err := ld.e.endSession(ctx, ld.cand); err != nil {
		if unlockErr != nil {
			return ld.e.errorf("resign", unlabel(unlockErr), err)
		}
		return ld.e.errorf("resign", err)
	}
	ld.released = true
	ld.e.announce()
	return nil
}

// endSessionSQL ends the session pid if it still holds the election lock
// under the candidate's identity, waiting for it to exit, and says whether the
// lock is free of it. No row matches once the session is gone.
const endSessionSQL = `select coalesce(bool_and(pg_catalog.pg_terminate_backend(l.pid, $6)), true)
from pg_catalog.pg_locks l join pg_catalog.pg_stat_activity a on a.pid = l.pid
where l.locktype = 'advisory' and l.granted
	and l.database = (select oid from pg_catalog.pg_database where datname = pg_catalog.current_database())
	and l.classid::int8 = $1 and l.objid::int8 = $2 and l.objsubid = $3
	and l.pid = $4 and a.application_name = $5`

// errSessionAlive is the cause when a stale session outlived the wait for it
// to exit.
var errSessionAlive = errors.New("the old session still holds the lock")

// endSession makes sure the server no longer holds the election lock for the
// session of c.
func (e *Election) endSession(ctx context.Context, c Candidate) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("confirming the release: %w", err)
	}
	if c.PID == 0 {
		return nil // the session ended before its process id was read
	}
	classid, objid, subid := lockTag(e.key)
	var gone bool
	err := e.pool.QueryRow(ctx, endSessionSQL, classid, objid, subid, c.PID, c.Identity,
		terminateWait.Milliseconds()).Scan(&gone)
	switch {
	case err != nil:
		return fmt.Errorf("confirming the release: %w", err)
	case !gone:
		return errSessionAlive
	}
	return nil
}

// lockTag returns how pg_locks shows key: classid, objid and objsubid.
func lockTag(k advisorylock.Key) (classid, objid int64, subid int) {
	if k1, k2, ok := k.Pair(); ok {
		return int64(uint32(k1)), int64(uint32(k2)), 2
	}
	v, _ := k.Int64()
	return int64(uint32(uint64(v) >> 32)), int64(uint32(v)), 1
}
