package advisorylockgocron

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/periodic"
)

// recordTimeout bounds the record of a run's end and the release of its
// lock, done on a context of their own: gocron hands Unlock the job's
// context, which a shutting-down scheduler has cancelled.
const recordTimeout = 10 * time.Second

// A Locker is a gocron.Locker under which each job runs at most once per
// period across every scheduler that shares the database: see the package
// documentation. It is safe for concurrent use.
type Locker struct {
	pool   *pgxpool.Pool
	period time.Duration
	opts   []periodic.Option

	mu      sync.Mutex
	jobs    map[string]*periodic.Job // by gocron job name; guarded by mu
	running map[string]*run          // runs under way here, by job name; guarded by mu
}

var _ gocron.Locker = (*Locker)(nil)

// NewLocker returns a Locker whose jobs run at most once per period, each
// recorded under its gocron name in the runs table of the database pool
// connects to, with opts (periodic.WithSchema, WithIdentity, WithMinSpacing,
// WithLockOptions). It does no I/O. Bad input (a nil pool, a period that is
// not positive, an invalid option) is reported by every Lock, as an error
// matching [advisorylock.ErrInvalidArgument].
func NewLocker(pool *pgxpool.Pool, period time.Duration, opts ...periodic.Option) *Locker {
	return &Locker{
		pool: pool, period: period, opts: opts,
		jobs: make(map[string]*periodic.Job), running: make(map[string]*run),
	}
}

// job returns the periodic job of a gocron job's name.
func (l *Locker) job(name string) *periodic.Job {
	l.mu.Lock()
	defer l.mu.Unlock()
	j, ok := l.jobs[name]
	if !ok {
		j = periodic.New(l.pool, name, l.period, l.opts...)
		l.jobs[name] = j
	}
	return j
}

// Lock is called by gocron before each run of the job called key. It takes
// the job's lock without waiting and, if a run is due, records its start and
// returns the gocron.Lock that gocron releases after the run; the job then
// runs. Otherwise it returns the reason, and gocron skips the run: an error
// matching [advisorylock.ErrLocked] (a run is under way elsewhere),
// [periodic.ErrNotDue] (the last successful run began less than the period
// ago), or the database's. It blocks for two round trips.
func (l *Locker) Lock(ctx context.Context, key string) (gocron.Lock, error) {
	if l == nil {
		return nil, &advisorylock.Error{Op: "lock", Err: fmt.Errorf("%w: nil Locker", advisorylock.ErrInvalidArgument)}
	}
	job := l.job(key)
	m := job.Mutex()
	if m == nil { // bad input: Status says what
		_, err := job.Status(ctx)
		return nil, err
	}
	lk, err := m.TryLock(ctx)
	if err != nil {
		return nil, err
	}
	c, err := job.Begin(ctx, lk)
	if err != nil {
		rctx, cancel := recordContext(ctx)
		defer cancel()
		_ = lk.Unlock(rctx)
		return nil, err
	}
	r := &run{l: l, name: key, lock: lk, claim: c}
	l.mu.Lock()
	l.running[key] = r
	l.mu.Unlock()
	return r, nil
}

// JobFailed marks the run of the job called name under way in this process
// as failed, so that it does not count: the next scheduled run anywhere runs
// the job again. err is the job's error (recorded as periodic.Claim.End
// records one). gocron does not tell a Locker how a job ended; the listeners
// of [Locker.EventListeners] call JobFailed, and so should a job's own
// AfterJobRunsWithError listener, which replaces theirs. A job that is not
// running here is ignored.
func (l *Locker) JobFailed(name string, err error) {
	if err == nil {
		err = errJobFailed
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if r, ok := l.running[name]; ok && r.failure == nil {
		r.failure = err
	}
}

var errJobFailed = errors.New("job failed")

// EventListeners returns the gocron event listeners that tell the Locker a
// run failed: AfterJobRunsWithError, and AfterJobRunsWithPanic (with which
// gocron recovers a job's panic). Give them to every job, or to all at once:
//
//	gocron.WithGlobalJobOptions(gocron.WithEventListeners(locker.EventListeners()...))
//
// Without them, a run counts when the job returns, whatever it returned.
func (l *Locker) EventListeners() []gocron.EventListener {
	return []gocron.EventListener{
		gocron.AfterJobRunsWithPanic(func(_ uuid.UUID, name string, _ any) {
			l.JobFailed(name, periodic.Failure("panic"))
		}),
		gocron.AfterJobRunsWithError(func(_ uuid.UUID, name string, err error) {
			l.JobFailed(name, err)
		}),
	}
}

// run is a job's run under way, between Lock and Unlock.
type run struct {
	l       *Locker
	name    string
	lock    *advisorylock.Lock
	claim   *periodic.Claim
	failure error // set by JobFailed; guarded by l.mu
}

// Unlock records how the run ended (a success, unless JobFailed was told
// otherwise, or the lock was lost) and releases the job's lock, on a context
// of its own bounded to 10s. It returns the errors of both; gocron ignores
// them.
func (r *run) Unlock(ctx context.Context) error {
	r.l.mu.Lock()
	failure := r.failure
	if r.l.running[r.name] == r {
		delete(r.l.running, r.name)
	}
	r.l.mu.Unlock()
	rctx, cancel := recordContext(ctx)
	defer cancel()
	endErr := r.claim.End(rctx, failure)
	unlockErr := r.lock.Unlock(rctx)
	if errors.Is(endErr, advisorylock.ErrLockLost) && errors.Is(unlockErr, advisorylock.ErrLockLost) {
		unlockErr = nil // said once
	}
	return errors.Join(endErr, unlockErr)
}

// recordContext returns ctx's values without its cancellation, bounded to
// 10s.
func recordContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
}
