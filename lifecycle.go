package advisorylock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The life of a Lock, in one place: its states, every transition between
// them, and the end of its connection.
//
//	         hold               begin                 finish
//	acquired ────▶ held ─────────────▶ releasing ─────────────▶ released
//	                 │                     │
//	                 │ lose                │ finish, when the release
//	                 ▼                     │ found the lock lost
//	               lost ◀──────────────────┘
//
// An acquisition that wins the lock makes a Lock (newLock) and hands it to
// hold, which starts the watcher of a session lock once the hooks have seen
// it. A Lock leaves held exactly once, under mu: to releasing (begin, from
// Unlock, Rollback or WithLock), to lost (lose, from the watcher or a
// statement in the lock's transaction that found the connection broken), or
// straight to released (abandon, when a hook panicked before the caller got
// the lock). Whoever moves it out of held owns its connection from then on
// and ends it exactly once (endConn): back to the pool only when the server
// is known to hold nothing for it, closed otherwise. Done is closed by the
// transition to released or lost.

// lockState is where a Lock is in its life.
type lockState uint8

const (
	stateHeld lockState = iota
	stateReleasing
	stateReleased
	stateLost
)

var stateNames = [...]string{"held", "releasing", "released", "lost"}

// A Lock is a held advisory lock, returned by [Mutex.Lock] and
// [Mutex.TryLock]. It is safe for concurrent use and may be released from any
// goroutine.
type Lock struct {
	// Set when the lock is acquired, then read-only.
	m       *Mutex
	sess    *lockSession  // the lock session carrying it; nil on a pinned connection
	conn    *pgxpool.Conn // the pinned connection, if any; ended once, by endConn
	pid     int32         // the server process of its session
	tx      pgx.Tx        // the lock's transaction, in transaction scope
	granted time.Time     // when it was granted, for Holders (on a lock session)
	token   int64         // the fencing token; 0 without fencing
	done    chan struct{} // closed on the way to released or lost

	// Set before the Lock is returned or watched, then read-only.
	acquired time.Time       // when hooks are in use
	hctx     context.Context // the hold context (HoldHook.HoldStart's)

	// Owned by whoever moves the Lock out of held (see above).
	gate  *gate       // this process's queue for the lock, left once
	guard *time.Timer // bounds WithLock's release; armed and stopped by release

	mu        sync.Mutex // guards the fields below
	state     lockState
	err       error                   // why the lock was lost; set with stateLost
	destroyed chan struct{}           // closed once a lost lock's connection is closed; set with stateLost
	onLost    context.CancelCauseFunc // WithLock's context, cancelled on loss
	armed     bool                    // hold has run: a loss may be reported
	early     error                   // a loss noticed before hold ran, reported by hold
	watch     watcher                 // the watcher goroutine of a held session lock
}

// newLock returns the Lock won on conn.
func newLock(m *Mutex, conn *pgxpool.Conn) *Lock {
	return &Lock{m: m, conn: conn, pid: int32(conn.Conn().PgConn().PID()), done: make(chan struct{})}
}

// newSessionLock returns the Lock won on lock session s.
func newSessionLock(m *Mutex, s *lockSession) *Lock {
	return &Lock{m: m, sess: s, pid: s.pid, granted: time.Now(), done: make(chan struct{})}
}

// hold sets the lock's hold context and, for a session lock, starts watching
// its connection. It runs once the hooks have seen the lock, so that a loss is
// never reported (LockLost, HoldEnd) before HoldStart has returned, nor with a
// hold context not yet set.
func (l *Lock) hold(hctx context.Context) {
	l.hctx = hctx
	if l.conn != nil && l.tx == nil {
		l.startWatch() // a lock session watches the locks it carries
	}
	l.mu.Lock()
	l.armed = true
	early := l.early
	l.mu.Unlock()
	if early != nil {
		l.lose(early)
	}
}

// Mutex returns the Mutex the lock was taken from.
func (l *Lock) Mutex() *Mutex { return l.m }

// PID returns the server process id (pg_backend_pid) of the session that
// holds the lock, as pg_locks and pg_stat_activity show it, or 0 once the
// lock is released or lost.
func (l *Lock) PID() int32 {
	if !l.held() {
		return 0
	}
	return l.pid
}

// Done returns a channel that is closed when the lock is released or lost.
// A held session lock is watched (see [WithKeepalive]); a transaction-scoped
// lock notices a loss at the next statement run in its transaction, or at
// release.
func (l *Lock) Done() <-chan struct{} { return l.done }

// Err returns nil while the lock is held. Once Done is closed, it returns an
// error matching ErrLockLost if the lock was lost, or ErrNotHeld if it was
// released.
func (l *Lock) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch l.state {
	case stateReleased:
		return l.m.errorf("lock", ErrNotHeld)
	case stateLost:
		return l.m.errorf("lock", l.err)
	}
	return nil
}

// Tx returns the transaction a transaction-scoped lock lives in, or nil for a
// session-scoped lock. Statements run through it commit or roll back with the
// lock; its Commit and Rollback return ErrTxManaged. After release its
// statements fail with ErrNotHeld.
func (l *Lock) Tx() pgx.Tx {
	if l.tx == nil {
		return nil
	}
	return &lockTx{Tx: l.tx, l: l}
}

// Unlock releases the lock, blocking for one round trip: pg_advisory_unlock
// for a session lock, COMMIT for a transaction-scoped one. Whatever it
// returns, the Lock holds nothing afterwards: a release that cannot complete
// (an error, ctx done, an unexpected answer) closes the connection, which
// ends the session and its locks. A lost lock returns ErrLockLost, a second
// Unlock ErrNotHeld, a commit turned into a rollback pgx.ErrTxCommitRollback.
func (l *Lock) Unlock(ctx context.Context) error {
	return l.release(ctx, true, 0)
}

// Rollback releases the lock like Unlock, but a transaction-scoped lock's
// transaction is rolled back instead of committed. For a session-scoped lock
// it is Unlock.
func (l *Lock) Rollback(ctx context.Context) error {
	return l.release(ctx, false, 0)
}

// String describes the lock for logs: the Mutex and its state.
func (l *Lock) String() string {
	l.mu.Lock()
	state := stateNames[l.state]
	l.mu.Unlock()
	return fmt.Sprintf("%s (%s, %s scope, %s)", l.m, l.m.cfg.mode, l.m.cfg.scope, state)
}

// held reports whether the lock is still held.
func (l *Lock) held() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state == stateHeld
}

// release is Unlock (commit) and Rollback (!commit): held to releasing, the
// release statement, the connection's end, then released (or lost). A bound
// (WithLock's) is a timer that closes the connection's socket: rather than a
// context deadline, which pgx would have to watch. It is armed only once the
// lock is releasing, when the connection is this goroutine's until endConn
// disarms it; a release cut short so reports the lock lost, since the server
// stopped answering.
func (l *Lock) release(ctx context.Context, commit bool, bound time.Duration) error {
	op := "unlock"
	if !commit {
		op = "rollback"
	}
	if err := l.begin(op); err != nil {
		return err
	}
	var err error
	if l.sess != nil {
		err = l.releaseOnSession(ctx, op, bound)
	} else {
		err = l.releaseConn(ctx, op, commit, bound)
	}
	l.finish(err)
	return err
}

// releaseOnSession releases a lock carried by a lock session. A bound that
// passes before the server answers means the session went silent: it is
// ended, and every lock on it is lost.
func (l *Lock) releaseOnSession(ctx context.Context, op string, bound time.Duration) error {
	if bound <= 0 {
		return l.unlockOn(ctx, op)
	}
	bctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	err := l.unlockOn(bctx, op)
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		l.sess.fail()
		return l.m.errorf(op, ErrLockLost, errSilent)
	}
	return err
}

// releaseConn releases a lock on a pinned connection and ends the
// connection.
func (l *Lock) releaseConn(ctx context.Context, op string, commit bool, bound time.Duration) error {
	if bound > 0 {
		sock := l.conn.Conn().PgConn().Conn()
		l.guard = time.AfterFunc(bound, func() { _ = sock.Close() })
	}
	var err error
	keep := false
	switch {
	case !l.stopWatch(ctx):
		// The watcher was probing a silent server and ctx ended first:
		// stopWatch closed the connection, which releases the lock.
		err = l.m.errorf(op, ctx.Err())
	case l.tx != nil:
		keep, err = l.endTx(ctx, op, commit)
	default:
		keep, err = l.unlockSession(ctx, op)
	}
	l.endConn(keep)
	return err
}

// begin moves a held lock to releasing, or says why it cannot. After a loss
// it waits until the lost connection is closed, so that the pool no longer
// counts it when Unlock returns.
func (l *Lock) begin(op string) error {
	if l == nil {
		return &Error{Op: op, Err: ErrNotHeld}
	}
	l.mu.Lock()
	switch l.state {
	case stateHeld:
		l.state = stateReleasing
		l.mu.Unlock()
		return nil
	case stateLost:
		err, destroyed := l.err, l.destroyed
		l.mu.Unlock()
		<-destroyed
		return l.m.errorf(op, err)
	default:
		l.mu.Unlock()
		return l.m.errorf(op, ErrNotHeld)
	}
}

// finish ends a release: releasing to released, or to lost when the release
// found the lock lost. It closes Done and reports HoldEnd, preceded by
// LockLost on a loss.
func (l *Lock) finish(err error) {
	lost := errors.Is(err, ErrLockLost)
	l.mu.Lock()
	l.state = stateReleased
	if lost {
		l.state, l.err = stateLost, lostCause(err)
		l.destroyed = closedChan
	}
	l.mu.Unlock()
	l.leaveGate()
	close(l.done)
	l.reportEnd(lost, err)
}

// lose moves a held lock to lost because of cause: Done is closed and
// WithLock's context cancelled first, then the connection is closed, then the
// hooks are told. It does nothing when the lock is no longer held (a release
// under way reports the loss itself).
func (l *Lock) lose(cause error) {
	l.mu.Lock()
	if l.state != stateHeld {
		l.mu.Unlock()
		return
	}
	if !l.armed {
		// Not yet seen by the hooks and the caller: hold reports it.
		if l.early == nil {
			l.early = cause
		}
		l.mu.Unlock()
		return
	}
	l.state = stateLost
	l.err = wrapErrs(ErrLockLost, cause)
	l.destroyed = make(chan struct{})
	cancel := l.onLost
	l.mu.Unlock()

	err := l.m.errorf("lock", l.err)
	// The holder is told first: when the client noticed the loss itself (a
	// probe went unanswered), the server may still hold the lock, until the
	// connection is closed below.
	close(l.done)
	if cancel != nil {
		cancel(err)
	}
	l.endConn(false)
	close(l.destroyed)
	l.leaveGate()
	l.reportEnd(true, err)
}

// abandon releases a lock that its caller never received, by closing its
// connection, without hooks: a hook panicked between the acquisition and
// Lock returning.
func (l *Lock) abandon() {
	l.mu.Lock()
	if l.state != stateHeld {
		l.mu.Unlock()
		return
	}
	l.state = stateReleased
	l.mu.Unlock()
	if l.sess != nil {
		_ = l.unlockOn(context.Background(), "unlock")
	} else {
		l.stopWatch(context.Background())
		l.endConn(false)
	}
	l.leaveGate()
	close(l.done)
}

// bind arranges for cancel to be called with the loss when the lock is lost,
// at once if it already was.
func (l *Lock) bind(cancel context.CancelCauseFunc) {
	l.mu.Lock()
	if l.state == stateLost {
		err := l.err
		l.mu.Unlock()
		cancel(l.m.errorf("lock", err))
		return
	}
	l.onLost = cancel
	l.mu.Unlock()
}

// reportEnd tells the hooks that the hold ended.
func (l *Lock) reportEnd(lost bool, err error) {
	if l.m.hooks == nil || l.acquired.IsZero() {
		return
	}
	held := time.Since(l.acquired)
	if lost {
		l.m.hooks.LockLost(l.hctx, l, LostData{Held: held, Err: err})
	}
	l.m.hooks.HoldEnd(l.hctx, l, HoldEndData{Held: held, Lost: lost, Err: err})
}

// leaveGate lets the next goroutine of this process that waits for the lock go
// ahead, once the server no longer sees this lock held.
func (l *Lock) leaveGate() {
	if l.gate != nil {
		l.m.leave(l.gate)
		l.gate = nil
	}
}

// lostCause returns what a loss error wraps below its operation.
func lostCause(err error) error {
	var e *Error
	if errors.As(err, &e) {
		return e.Err
	}
	return err
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// The end of a connection.

// endConn ends the lock's connection: back to the pool when keep is set and
// WithLock's release bound has not fired, closed otherwise.
func (l *Lock) endConn(keep bool) {
	if l.conn == nil {
		return // a lock session's locks end with an unlock, or with it
	}
	if l.disarm() && keep {
		l.conn.Release()
		return
	}
	destroy(l.conn)
}

// releaseWithin is release on a context that keeps ctx's values but not its
// cancellation, bounded to d: WithLock's release.
func (l *Lock) releaseWithin(ctx context.Context, commit bool, d time.Duration) error {
	return l.release(context.WithoutCancel(ctx), commit, d)
}

// disarm stops release's timer. It reports false when the timer fired (or is
// firing): the connection is closed or about to be, and must not go back to
// the pool.
func (l *Lock) disarm() bool {
	if l.guard == nil {
		return true
	}
	return l.guard.Stop()
}

// destroy closes a pooled connection and removes it from the pool, ending
// its session: the server releases every lock it held.
func destroy(conn *pgxpool.Conn) {
	c := conn.Hijack()
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	_ = c.Close(ctx)
}

// cleanupTimeout bounds the statement that proves a connection clean, and
// closeTimeout the goodbye to a connection being destroyed.
const (
	cleanupTimeout = 5 * time.Second
	closeTimeout   = time.Second
)

// releaseAfterFailure returns the connection of a failed session-level
// acquisition to the pool once it is proven to hold no advisory lock, and
// destroys it otherwise. A grant that raced the failure is released here.
func (m *Mutex) releaseAfterFailure(conn *pgxpool.Conn) {
	c := conn.Conn()
	if c.IsClosed() {
		conn.Release() // the pool destroys it
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	var held int
	if err := c.QueryRow(ctx, cleanupSQL).Scan(&held, nil); err != nil {
		destroy(conn)
		return
	}
	if held > 0 {
		m.racedGrants.Add(int64(held))
	}
	conn.Release()
}

// rollbackAfterFailure ends the transaction of a failed transaction-scoped
// acquisition, which releases whatever it was granted, and returns the
// connection to the pool; when that fails, it destroys the connection.
func rollbackAfterFailure(conn *pgxpool.Conn) {
	c := conn.Conn()
	if c.IsClosed() {
		conn.Release()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if _, err := c.Exec(ctx, "rollback"); err != nil {
		destroy(conn)
		return
	}
	conn.Release()
}
