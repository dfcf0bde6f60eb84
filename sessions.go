package advisorylock

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"
	"weak"

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
const sessionIdle = time.Second

// sessionOpenTimeout bounds the opening of a lock session when the caller's
// context has no earlier deadline.
const sessionOpenTimeout = 30 * time.Second

// sessionKey identifies the lock sessions a Mutex uses: those of its pool,
// probed at its keepalive interval, checked for a pooler or not. The pool is
// held weakly, so that the sets do not keep every pool ever used alive.
type sessionKey struct {
	pool        weak.Pointer[pgxpool.Pool]
	keepalive   time.Duration
	allowPooler bool
	max         int
}

// sessionSets holds the lock sessions of every pool in use, by sessionKey.
// A Mutex holds its pool (and WithSessionPool's), so its set stays here, the
// one set of its key, while it lives; once nothing holds the pool, its sets
// leave (forgetSessions), and their idle sessions close as usual.
var sessionSets = struct {
	mu sync.Mutex
	m  map[sessionKey]*sessionSet
}{m: make(map[sessionKey]*sessionSet)}

// sessionsFor returns the lock sessions of pool for key's other settings,
// made on first use with the pool's connection settings.
func sessionsFor(pool *pgxpool.Pool, key sessionKey) *sessionSet {
	key.pool = weak.Make(pool)
	sessionSets.mu.Lock()
	defer sessionSets.mu.Unlock()
	set := sessionSets.m[key]
	if set == nil {
		set = &sessionSet{key: key, cfg: sessionConfig(&pool.Config().ConnConfig.Config, key.keepalive)}
		sessionSets.m[key] = set
		runtime.AddCleanup(pool, forgetSessions, key)
	}
	return set
}

// forgetSessions removes the set of key, whose pool is gone.
func forgetSessions(key sessionKey) {
	sessionSets.mu.Lock()
	defer sessionSets.mu.Unlock()
	delete(sessionSets.m, key)
}

// A sessionSet is the lock sessions of one sessionKey.
type sessionSet struct {
	key sessionKey

	mu       sync.Mutex      // guards the fields below and every lockSession's
	sessions []*lockSession  // alive, in opening order
	opening  int             // shared sessions being opened
	opened   chan struct{}   // closed when an opening ends; nil while none
	cfg      *pgconn.Config  // the pool's connection settings, read when the set is made; read-only
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

// connConfig returns the pool's connection settings, read once, with the
// lock sessions' TCP keepalive (see sessionConfig).
func (set *sessionSet) connConfig() *pgconn.Config { return set.cfg }

// open opens a lock session. It blocks for the connection and one round
// trip, the pooler check (skipped with AllowPooler), whose statement also sets
// the server's bounds on a silent client (see bound.go).
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
	if set.key.allowPooler {
		// Behind a pooler the server's peer is the pooler, whose own
		// keepalive settings bound a silent client; settings made here
		// would stay on a server session that others get next.
		return s, nil
	}
	pid := strconv.Itoa(int(s.pid))
	bounds := boundSQL(set.key.keepalive, w.ParameterStatus("server_version"))
	if w.ParameterStatus("in_hot_standby") == "on" {
		// A hot standby takes no lock (the caller refuses it), so the
		// pooler check's round trip is spared; the bounds are sent without
		// waiting, in case a promotion makes the session carry locks.
		if bounds != "" {
			err = w.Send("select pg_catalog.pg_backend_pid()"+bounds+" where pg_catalog.pg_backend_pid() = "+pid, s.checkSetup)
		}
		if err != nil {
			_ = w.Close(context.Background())
			return nil, err
		}
		return s, nil
	}
	// Behind a pooler the backend running a statement is not the one the
	// session announced; the first statement says whether it is, and sets
	// the bounds only where it is, so that a pooler's server session keeps
	// its settings.
	res, err := w.Do(ctx, "select pg_catalog.pg_backend_pid()"+bounds+" where pg_catalog.pg_backend_pid() = "+pid)
	switch {
	case err == nil && res.Err != nil:
		err = res.Err
	case err == nil && (len(res.Rows) != 1 || string(res.Rows[0][0]) != pid):
		err = ErrPooler
	}
	if err != nil {
		_ = w.Close(context.Background())
		return nil, err
	}
	return s, nil
}

// checkSetup ends a session whose set-up statement failed: its bounds are not
// what this package promises.
func (s *lockSession) checkSetup(res pgwire.Result, err error) {
	if err == nil && (res.Err != nil || len(res.Rows) != 1) {
		s.fail()
	}
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
