package advisorylock

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock/internal/pgwire"
)

// Lock sessions.
//
// A session-scoped lock is held on a lock session: a server session this
// package opens and owns (package pgwire), from the connection settings of
// the Mutex's pool, never on one of the pool's connections. One lock session
// carries any number of locks, and the lock and unlock calls of every
// goroutine that uses it share its round trips (pipelining). Lock sessions
// are few: an uncontended lock is taken on one of at most DefaultMaxSessions
// (WithMaxSessions) shared ones, with pg_try_advisory_lock, which never
// waits. A lock that must wait does so on a session of its own, which then
// carries it, and may carry other locks after. A session that carries
// nothing for sessionIdle is closed.
//
// PostgreSQL's session locks are reentrant: a session asked twice for a key
// grants it twice, whatever the modes. So a session is never asked for a key
// in a mode that conflicts with what it holds or is being asked for already;
// such a request conflicts with a holder in this very process, which the
// server would refuse anyway: TryLock fails at once, and Lock waits on a
// session of its own, where the server decides.
//
// A lock session's reader notices at once when the server ends the session,
// and its keepalive probe (one per session, not per lock) a network gone
// silent; every lock on a session that ended is lost.

// DefaultMaxSessions is how many shared lock sessions carry the uncontended
// session locks of the Mutexes on one pool when WithMaxSessions is not given.
const DefaultMaxSessions = 2

// sessionIdle is how long a lock session that carries nothing stays open.
// A variable for the tests.
var sessionIdle = time.Second

// sessionOpenTimeout bounds the opening of a lock session when the caller's
// context has no earlier deadline.
const sessionOpenTimeout = 30 * time.Second

// sessionKey identifies the lock sessions a Mutex uses: those of its pool,
// probed at its keepalive interval, checked for a pooler or not.
type sessionKey struct {
	pool        *pgxpool.Pool
	keepalive   time.Duration
	allowPooler bool
	max         int
}

// sessionSets holds the lock sessions of every pool, by sessionKey.
var sessionSets = struct {
	mu sync.Mutex
	m  map[sessionKey]*sessionSet
}{m: make(map[sessionKey]*sessionSet)}

// sessionsFor returns the lock sessions for key, made on first use.
func sessionsFor(key sessionKey) *sessionSet {
	sessionSets.mu.Lock()
	defer sessionSets.mu.Unlock()
	set := sessionSets.m[key]
	if set == nil {
		set = &sessionSet{key: key}
		sessionSets.m[key] = set
	}
	return set
}

// A sessionSet is the lock sessions of one sessionKey.
type sessionSet struct {
	key sessionKey

	mu       sync.Mutex      // guards the fields below and every lockSession's
	sessions []*lockSession  // alive, in opening order
	opening  int             // shared sessions being opened
	opened   chan struct{}   // closed when an opening ends; nil while none
	cfg      *pgconn.Config  // the pool's connection settings, read once
	holds    map[Key]holding // this process's holds and requests, by key
	opens    int             // sessions opened so far, for the tests
	janitor  *time.Timer     // closes idle sessions; nil while there are none
}

// holding counts the holds and requests of one key in this process.
type holding struct {
	shared, exclusive int32
}

// conflicts reports whether a request in mode conflicts with h.
func (h holding) conflicts(mode Mode) bool {
	if mode == ModeShared {
		return h.exclusive > 0
	}
	return h.shared > 0 || h.exclusive > 0
}

func (h *holding) add(mode Mode, n int32) {
	if mode == ModeShared {
		h.shared += n
	} else {
		h.exclusive += n
	}
}

// A lockSession is one lock session.
type lockSession struct {
	set *sessionSet
	w   *pgwire.Session
	pid int32

	// Guarded by set.mu.
	locks     map[*Lock]struct{} // the locks it carries
	waiting   bool               // a lock wait runs on it: it takes no other request
	pending   int                // requests in flight for locks not (yet) in locks
	idleSince time.Time          // since when it carries nothing; zero while it does
	gone      bool               // removed from the set
}

// connConfig returns the pool's connection settings, read once.
func (set *sessionSet) connConfig() *pgconn.Config {
	if set.cfg == nil {
		set.cfg = set.key.pool.Config().ConnConfig.Config.Copy()
	}
	return set.cfg
}

// open opens a lock session. It blocks for the connection and one round
// trip, the pooler check (skipped with AllowPooler).
func (set *sessionSet) open(ctx context.Context) (*lockSession, error) {
	set.mu.Lock()
	cfg := set.connConfig()
	set.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, sessionOpenTimeout)
	defer cancel()
	s := &lockSession{set: set, locks: make(map[*Lock]struct{})}
	w, err := pgwire.Connect(ctx, cfg, pgwire.Options{
		// pgwire probes after one to two intervals of silence and gives up
		// one interval (and a quarter) later: at half the keepalive, a
		// silent network is noticed within 1.625 keepalives, inside the two
		// WithKeepalive promises.
		Keepalive: set.key.keepalive / 2,
		Probe:     s.probe,
		OnDead:    s.dead,
	})
	if err != nil {
		return nil, fmt.Errorf("opening a lock session: %w", err)
	}
	s.w, s.pid = w, int32(w.PID())
	// A hot standby takes no lock (the caller refuses it), so the pooler
	// check's round trip is spared.
	if !set.key.allowPooler && w.ParameterStatus("in_hot_standby") != "on" {
		// Behind a pooler the backend running a statement is not the one
		// the session announced; the first statement says whether it is.
		res, err := w.Do(ctx, "select pg_catalog.pg_backend_pid()")
		switch {
		case err == nil && res.Err != nil:
			err = res.Err
		case err == nil && (len(res.Rows) != 1 || string(res.Rows[0][0]) != strconv.Itoa(int(s.pid))):
			err = ErrPooler
		}
		if err != nil {
			_ = w.Close(context.Background())
			return nil, err
		}
	}
	return s, nil
}

// route returns a shared session on which to ask for keys in mode, with the
// request counted in the holds, or conflict when this process holds or is
// asking for one of keys in a conflicting mode. It opens a shared session when
// there is none (and waits for one being opened).
func (set *sessionSet) route(ctx context.Context, keys []Key, mode Mode) (s *lockSession, conflict bool, err error) {
	set.mu.Lock()
	for {
		for _, k := range keys {
			if set.holds[k].conflicts(mode) {
				set.mu.Unlock()
				return nil, true, nil
			}
		}
		for _, c := range set.sessions {
			if !c.waiting {
				s = c
				break
			}
		}
		if s != nil {
			set.count(keys, mode, 1)
			s.pending++
			s.busy()
			set.mu.Unlock()
			return s, false, nil
		}
		if set.opening > 0 {
			opened := set.opened
			set.mu.Unlock()
			select {
			case <-opened:
			case <-ctx.Done():
				return nil, false, ctx.Err()
			}
			set.mu.Lock()
			continue
		}
		set.opening++
		set.opened = make(chan struct{})
		set.mu.Unlock()
		c, err := set.open(ctx)
		set.mu.Lock()
		set.opening--
		close(set.opened)
		set.opened = nil
		if err == nil {
			set.opens++
		}
		if err != nil {
			set.mu.Unlock()
			return nil, false, err
		}
		set.sessions = append(set.sessions, c)
	}
}

// count adds n requests in mode for each of keys to the holds; mu is held.
func (set *sessionSet) count(keys []Key, mode Mode, n int32) {
	if set.holds == nil {
		set.holds = make(map[Key]holding)
	}
	for _, k := range keys {
		h := set.holds[k]
		h.add(mode, n)
		if h == (holding{}) {
			delete(set.holds, k)
		} else {
			set.holds[k] = h
		}
	}
}

// waitSession returns a session that carries nothing, marked waiting, for a
// lock wait: an idle one, or a new one.
func (set *sessionSet) waitSession(ctx context.Context) (*lockSession, error) {
	set.mu.Lock()
	for _, c := range set.sessions {
		if !c.waiting && len(c.locks) == 0 && c.pending == 0 {
			c.waiting = true
			c.busy()
			set.mu.Unlock()
			return c, nil
		}
	}
	set.mu.Unlock()
	c, err := set.open(ctx)
	if err != nil {
		return nil, err
	}
	c.waiting = true
	set.mu.Lock()
	set.opens++
	set.sessions = append(set.sessions, c)
	set.mu.Unlock()
	return c, nil
}

// busy marks a session about to carry a request; mu is held.
func (s *lockSession) busy() { s.idleSince = time.Time{} }

// settle marks a session that carries nothing as idle from now on, and makes
// sure the set's janitor will look at it; mu is held. A timer per session,
// armed and stopped with every lock, would wake the runtime's network poller
// on the lock path; one janitor per set looks every half sessionIdle instead.
func (s *lockSession) settle() {
	if s.gone || s.waiting || s.pending > 0 || len(s.locks) > 0 {
		return
	}
	s.idleSince = time.Now()
	set := s.set
	if set.janitor == nil {
		set.janitor = time.AfterFunc(sessionIdle/2, set.sweep)
	}
}

// sweep is the janitor: it closes the sessions idle for sessionIdle, and
// looks again later while the set has sessions.
func (set *sessionSet) sweep() {
	var idle []*lockSession
	set.mu.Lock()
	now := time.Now()
	for _, c := range slices.Clone(set.sessions) {
		if !c.idleSince.IsZero() && now.Sub(c.idleSince) >= sessionIdle {
			c.remove()
			idle = append(idle, c)
		}
	}
	if len(set.sessions) > 0 {
		set.janitor.Reset(sessionIdle / 2)
	} else {
		set.janitor = nil
	}
	set.mu.Unlock()
	for _, c := range idle {
		_ = c.w.Close(context.Background())
	}
}

// remove takes the session out of its set; mu is held.
func (s *lockSession) remove() {
	if s.gone {
		return
	}
	s.gone = true
	set := s.set
	for i, c := range set.sessions {
		if c == s {
			set.sessions = append(set.sessions[:i], set.sessions[i+1:]...)
			break
		}
	}
}

// dead is the session's OnDead: every lock it carries is lost. It runs on
// the session's reader goroutine, which must not block: the locks are told
// on a goroutine of their own.
func (s *lockSession) dead(cause error) {
	set := s.set
	set.mu.Lock()
	s.remove()
	s.busy()
	locks := make([]*Lock, 0, len(s.locks))
	for l := range s.locks {
		locks = append(locks, l)
		set.count(l.m.keys, l.m.cfg.mode, -1)
	}
	clear(s.locks)
	set.mu.Unlock()
	if len(locks) == 0 {
		return
	}
	if errors.Is(cause, pgwire.ErrSilent) {
		cause = errSilent
	}
	go func() {
		for _, l := range locks {
			l.lose(cause)
		}
	}()
}

// fail ends the session, whose state is no longer known: every lock on it is
// lost.
func (s *lockSession) fail() {
	go func() { _ = s.w.Close(context.Background()) }()
}

// An answer is a lock session's answer to one request.
type answer struct {
	res pgwire.Result
	err error
}

// tryOn asks s for m's keys without waiting (the request is already counted
// by route). It reports whether the lock was granted; a lock granted after
// ctx ended is given back.
func (m *Mutex) tryOn(ctx context.Context, s *lockSession) (*Lock, bool, error) {
	late := func(res pgwire.Result, err error) {
		// The caller left: give back what was granted.
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
		m.settleTry(s, nil, granted)
		return nil, false, err
	}
	if len(granted) == len(m.keys) {
		l := newSessionLock(m, s)
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
	if len(res.Rows) != 1 || len(res.Rows[0]) != 1 {
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
	sql := "select " + m.sql.lockCallsLit()
	if bound > 0 && bound <= maxLockTimeout {
		sql = "select pg_catalog.set_config('lock_timeout', '" + timeoutMillis(bound) + "', true), " + m.sql.lockCallsLit()
	}
	var res pgwire.Result
	err, interrupted := interruptible(ctx, bound, m.grace(), s.w.Cancel, s.fail, func() error {
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
		set.mu.Lock()
		s.waiting = false
		if s.gone {
			set.mu.Unlock()
			return nil, m.errorf("lock", ErrLockLost)
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
	ans := make(chan answer, 1)
	done := func(res pgwire.Result, err error) {
		if err == nil && (res.Err != nil || res.Tag != "SELECT 1") {
			// The session did not hold what this process believed it
			// held: nothing it carries can be vouched for.
			s.fail()
		}
		ans <- answer{res, err}
	}
	var err error
	if m.cfg.allowPooler {
		err = s.w.Send(m.sql.unlockLit(), done)
	} else {
		err = s.w.SendStmt(m.sql.unlockStmt, done, m.sql.keyText...)
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
	if err := ctx.Err(); err != nil {
		// The unlock is sent all the same: the lock is released.
		return m.errorf(op, err)
	}
	select {
	case a := <-ans:
		switch {
		case a.err != nil:
			return m.errorf(op, ErrLockLost, a.err)
		case a.res.Err != nil:
			return m.errorf(op, ErrLockLost, a.res.Err)
		case a.res.Tag != "SELECT 1":
			return m.errorf(op, ErrLockLost, errUnlockFalse)
		}
		return nil
	case <-ctx.Done():
		// The unlock is on its way; a bad answer ends the session.
		return m.errorf(op, ctx.Err())
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
