package advisorylock

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/advisorylock/advisorylock/internal/interrupt"
	"github.com/advisorylock/advisorylock/internal/pgwire"
)

// The lock calls on a lock session: a try on a shared session, a wait on a
// session of its own, an unlock, and the keepalive probe that says when each
// lock was granted. See sessions.go for where sessions come from.

// tryOn asks s for m's keys without waiting (the request is already counted
// by route). It reports whether the lock was granted; a lock granted after
// ctx ended is given back.
func (m *Mutex) tryOn(ctx context.Context, s *lockSession) (*Lock, bool, error) {
	late := func(res pgwire.Result, err error) {
		// The caller left: give back what was granted.
		if err == nil && m.failedAfterGrant(res) {
			s.fail()
		}
		granted, _ := m.granted(res, err)
		m.settleTry(s, nil, granted)
	}
	var res pgwire.Result
	var err error
	if m.cfg.allowPooler {
		res, err = s.w.DoOr(ctx, m.sql.tryLit(), late)
	} else {
		res, err = s.w.DoStmt(ctx, m.sql.tryStmt, late, m.sql.keyText...)
	}
	if err != nil {
		// When the caller gave up (DoOr returned ctx's own error), late
		// settles the request; otherwise the session ended, or the request
		// was never sent, and it is settled here.
		if ctxErr := ctx.Err(); ctxErr == nil || err != ctxErr {
			m.settleTry(s, nil, nil)
		}
		return nil, false, err
	}
	granted, err := m.granted(res, nil)
	if err != nil {
		if m.failedAfterGrant(res) {
			// Keys may be held that this process does not know of.
			s.fail()
		}
		m.settleTry(s, nil, granted)
		return nil, false, err
	}
	if len(granted) == len(m.keys) {
		l := newSessionLock(m, s)
		if m.fence != nil && len(res.Rows[0]) > 1 {
			l.token, _ = strconv.ParseInt(string(res.Rows[0][1]), 10, 64)
		}
		if !m.settleTry(s, l, nil) {
			// The session ended as the grant arrived, and the lock with it.
			return nil, false, s.w.Err()
		}
		return l, true, nil
	}
	m.settleTry(s, nil, granted)
	return nil, false, nil
}

// granted returns the keys a try's answer says were granted.
func (m *Mutex) granted(res pgwire.Result, err error) ([]Key, error) {
	if err != nil {
		return nil, err
	}
	if res.Err != nil {
		if res.Err.Code == sqlstateOutOfSharedMemory {
			return nil, fmt.Errorf("%w: %w", ErrLockTable, res.Err)
		}
		return nil, res.Err
	}
	if len(res.Rows) != 1 || len(res.Rows[0]) < 1 {
		return nil, fmt.Errorf("unexpected answer to the lock call: %d rows", len(res.Rows))
	}
	v := string(res.Rows[0][0])
	if len(m.keys) == 1 {
		if v == "t" {
			return m.keys, nil
		}
		return nil, nil
	}
	// An array of booleans, one per key: {t,f,t}.
	var keys []Key
	for i, b := range strings.Split(strings.Trim(v, "{}"), ",") {
		if b == "t" && i < len(m.keys) {
			keys = append(keys, m.keys[i])
		}
	}
	return keys, nil
}

// settleTry ends a try's request: l, when granted, joins the session's locks
// (it reports false when the session has ended meanwhile); otherwise the keys
// granted are given back (a set granted in part, or a grant its caller left),
// and the request leaves the holds.
func (m *Mutex) settleTry(s *lockSession, l *Lock, giveBack []Key) bool {
	if len(giveBack) > 0 {
		if err := s.w.Send(unlockAllOf(giveBack, m.cfg.mode), s.checkGiveBack); err != nil {
			s.fail()
		}
	}
	set := s.set
	set.mu.Lock()
	defer set.mu.Unlock()
	s.pending--
	added := l != nil && !s.gone
	if added {
		s.locks[l] = struct{}{}
	} else {
		set.count(m.keys, m.cfg.mode, -1)
	}
	s.settle()
	return added
}

// checkGiveBack ends the session when a give-back was refused: it then
// carries something this process does not know.
func (s *lockSession) checkGiveBack(res pgwire.Result, err error) {
	if err == nil && res.Err != nil {
		s.fail()
	}
}

// waitOn waits on s, a session of its own, for m's keys, bounded by ctx and
// bound as Lock is. On success s carries the lock; on failure s is proven to
// hold nothing, or is closed.
func (m *Mutex) waitOn(ctx context.Context, s *lockSession, bound time.Duration) (*Lock, error) {
	sql := m.sql.waitLit(bound)
	var res pgwire.Result
	err, interrupted := interrupt.Run(ctx, bound, m.grace(), s.w.Cancel, s.fail, func() error {
		var err error
		res, err = s.w.Wait(context.Background(), sql)
		if err == nil && res.Err != nil {
			err = res.Err
		}
		return err
	})
	set := s.set
	if err == nil {
		l := newSessionLock(m, s)
		if m.fence != nil && len(res.Rows) == 1 {
			l.token, _ = strconv.ParseInt(string(res.Rows[0][0]), 10, 64)
		}
		set.mu.Lock()
		s.waiting = false
		if s.gone {
			// The session ended as the grant arrived, and the lock with
			// it: the wait can start again.
			set.mu.Unlock()
			cause := s.w.Err()
			if cause == nil {
				cause = pgwire.ErrClosed
			}
			return nil, m.errorf("lock", lostConn(cause))
		}
		s.locks[l] = struct{}{}
		set.count(m.keys, m.cfg.mode, 1)
		set.mu.Unlock()
		return l, nil
	}
	// After a failed or cancelled wait nothing can be assumed: a grant can
	// race the timeout. The session carries nothing else: it is cleaned.
	cctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	cres, cerr := s.w.Do(cctx, cleanupSQL)
	cancel()
	set.mu.Lock()
	s.waiting = false
	if cerr != nil || cres.Err != nil {
		s.remove()
		set.mu.Unlock()
		s.fail()
	} else {
		if len(cres.Rows) == 1 && string(cres.Rows[0][0]) != "0" {
			n, _ := strconv.Atoi(string(cres.Rows[0][0]))
			m.racedGrants.Add(int64(n))
		}
		s.settle()
		set.mu.Unlock()
	}
	if interrupted == nil && errors.Is(err, pgwire.ErrClosed) {
		err = lostConn(err) // the session ended: nothing is held
	}
	var pgErr *pgconn.PgError
	switch {
	case interrupted != nil:
		return nil, m.errorf("lock", interrupted, err)
	case errors.As(err, &pgErr) && pgErr.Code == sqlstateLockNotAvailable:
		return nil, m.errorf("lock", context.DeadlineExceeded, err)
	case errors.As(err, &pgErr) && pgErr.Code == sqlstateOutOfSharedMemory:
		return nil, m.errorf("lock", ErrLockTable, err)
	default:
		return nil, m.errorf("lock", err)
	}
}

// unlockOn releases l on its session. The unlock is on the wire when the
// holds drop, so a request routed to the session after it runs after it.
func (l *Lock) unlockOn(ctx context.Context, op string) error {
	s, m := l.sess, l.m
	var call pgwire.Call
	var err error
	if m.cfg.allowPooler {
		call, err = s.w.Start(nil, m.sql.unlockLit(), s.checkUnlock)
	} else {
		call, err = s.w.Start(m.sql.unlockStmt, "", s.checkUnlock, m.sql.keyText...)
	}
	set := s.set
	set.mu.Lock()
	if _, ok := s.locks[l]; ok {
		delete(s.locks, l)
		set.count(m.keys, m.cfg.mode, -1)
	}
	s.settle()
	set.mu.Unlock()
	if err != nil {
		return m.errorf(op, ErrLockLost, err)
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		// The unlock is sent all the same: the lock is released, and its
		// answer goes to checkUnlock, here if it is in already.
		if res, err := call.Await(ctx); err == nil {
			s.checkUnlock(res, nil)
		}
		return m.errorf(op, ctxErr)
	}
	res, err := call.Await(ctx)
	switch {
	case err != nil && errors.Is(err, pgwire.ErrClosed):
		return m.errorf(op, ErrLockLost, err)
	case err != nil:
		// The unlock is on its way; checkUnlock sees its answer.
		return m.errorf(op, err)
	case !unlockRefused(res):
		return nil
	}
	s.fail()
	if res.Err != nil {
		return m.errorf(op, ErrLockLost, res.Err)
	}
	return m.errorf(op, ErrLockLost, errUnlockFalse)
}

// unlockRefused reports whether an unlock's answer says that the session did
// not hold what this process believed it held.
func unlockRefused(res pgwire.Result) bool { return res.Err != nil || res.Tag != "SELECT 1" }

// checkUnlock ends the session when an unlock its caller did not wait for
// was refused: nothing it carries can be vouched for.
func (s *lockSession) checkUnlock(res pgwire.Result, err error) {
	if err == nil && unlockRefused(res) {
		s.fail()
	}
}

// probe is the keepalive probe of a lock session: a comment that says when
// each of its locks was granted, for Holders (pg_locks does not say). It
// runs on the session's reader goroutine.
func (s *lockSession) probe() string {
	var b strings.Builder
	b.WriteString(probePrefix)
	s.set.mu.Lock()
	for l := range s.locks {
		if b.Len() > maxProbeLen {
			break
		}
		appendGrant(&b, l.m.keys, l.granted)
	}
	s.set.mu.Unlock()
	return b.String()
}

// maxProbeLen keeps the probe within what pg_stat_activity shows of a
// statement (track_activity_query_size, 1024 bytes by default).
const maxProbeLen = 900

// unlockAllOf returns a statement that releases keys, one hold each, in mode.
func unlockAllOf(keys []Key, mode Mode) string {
	fn := "pg_advisory_unlock"
	if mode == ModeShared {
		fn += "_shared"
	}
	return "select " + literalCalls(fn, keys)
}
