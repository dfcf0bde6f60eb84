package advisorylockgocron

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/periodic"
)

// ErrNotLeader is what [Elector.IsLeader] returns to a scheduler that must
// not run the job: another leads, or this one took over less than the period
// after the last job start the previous leader approved.
var ErrNotLeader = errors.New("advisorylock: not the leader")

// retryDelay is how long the Elector waits before campaigning again after a
// campaign failed (the database away).
const retryDelay = time.Second

// An Elector is a gocron.Elector: the scheduler that holds the lock of the
// elector's name leads and runs the jobs, and a new leader runs none until
// the period has passed since the last job start its predecessor approved
// (see the package documentation). It campaigns in the background from New
// until Close. It is safe for concurrent use.
type Elector struct {
	job    *periodic.Job // the record of approvals: one run each
	period time.Duration
	err    error // bad input, reported by IsLeader

	stop context.CancelFunc
	done chan struct{} // closed when the campaign has ended

	mu   sync.Mutex  // serialises approvals, which are runs of job
	lead *leadership // the leadership under way, or nil; guarded by mu
}

var _ gocron.Elector = (*Elector)(nil)

// leadership is one term as leader.
type leadership struct {
	lock    *advisorylock.Lock
	readyAt time.Time // on this process's monotonic clock: when it may approve
}

// approvalPeriod is the period of the elector's own record, whose runs are
// approvals: any approval is due (the takeover rule is the Elector's).
const approvalPeriod = time.Nanosecond

// NewElector returns an Elector named name (the name of its lock, and of its
// record in the runs table; use one that no job has), whose new leaders
// wait out period after the last job start approved before approving any, and
// starts its campaign in the background: it waits for the lock in the
// server's queue and holds it while it leads. opts configure the record and
// the lock (periodic.WithSchema, WithIdentity, WithLockOptions). Bad input (a
// nil pool, an empty name, a period that is not positive, an invalid option)
// is reported by every IsLeader, as an error matching
// [advisorylock.ErrInvalidArgument]. Close must be called to end the
// campaign and release the lock.
func NewElector(pool *pgxpool.Pool, name string, period time.Duration, opts ...periodic.Option) *Elector {
	e := &Elector{job: periodic.New(pool, name, approvalPeriod, opts...), period: period, done: make(chan struct{})}
	if e.job.Mutex() == nil { // bad input, which Status reports before any round trip
		_, e.err = e.job.Status(context.Background())
	}
	if e.err == nil && period <= 0 {
		e.err = &advisorylock.Error{Op: "elector", Err: fmt.Errorf("%w: period %v: not positive", advisorylock.ErrInvalidArgument, period)}
	}
	var ctx context.Context
	ctx, e.stop = context.WithCancel(context.Background())
	if e.err != nil {
		close(e.done)
		return e
	}
	go e.campaign(ctx)
	return e
}

// campaign leads whenever it can, until ctx ends.
func (e *Elector) campaign(ctx context.Context) {
	defer close(e.done)
	for ctx.Err() == nil {
		if err := e.leadOnce(ctx); err != nil && ctx.Err() == nil {
			t := time.NewTimer(retryDelay)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
	}
}

// leadOnce waits for the lock, leads until the lock is lost or ctx ends, and
// releases it.
func (e *Elector) leadOnce(ctx context.Context) error {
	l, err := e.job.Mutex().Lock(ctx)
	if err != nil {
		return err
	}
	defer func() {
		e.mu.Lock()
		e.lead = nil
		e.mu.Unlock()
		rctx, cancel := recordContext(ctx)
		defer cancel()
		_ = l.Unlock(rctx)
	}()
	// The takeover rule: the last approval, by whichever leader, began
	// s.Last.StartedAt; none before the period has passed since, on the
	// server's clock. The wait is a duration between two of its readings.
	s, err := e.job.Status(ctx)
	if err != nil {
		return err
	}
	wait := time.Duration(0)
	if s.Last.Token != 0 {
		wait = s.Last.StartedAt.Add(e.period).Sub(s.Now)
	}
	e.mu.Lock()
	e.lead = &leadership{lock: l, readyAt: time.Now().Add(wait)}
	e.mu.Unlock()
	select {
	case <-l.Done():
		return l.Err()
	case <-ctx.Done():
		return nil
	}
}

// IsLeader is called by gocron before each run of each job: it returns nil
// when this scheduler leads and may run the job, having recorded the job's
// start (two round trips), and otherwise an error matching [ErrNotLeader],
// after which gocron skips the run. It fails with the database's errors too
// (ctx's when ctx ends them), with [advisorylock.ErrLockLost] when the
// server shows the lock lost, and with [advisorylock.ErrInvalidArgument] for
// bad input.
func (e *Elector) IsLeader(ctx context.Context) error {
	if e == nil {
		return &advisorylock.Error{Op: "isleader", Err: fmt.Errorf("%w: nil Elector", advisorylock.ErrInvalidArgument)}
	}
	if e.err != nil {
		return e.err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	ld := e.lead
	switch {
	case ld == nil || ld.lock.Err() != nil:
		return fmt.Errorf("%w: %v is led by another scheduler, or by none", ErrNotLeader, e.job)
	case time.Now().Before(ld.readyAt):
		return fmt.Errorf("%w yet: %v changed leaders; the new one approves no job before %v from now, a period after the last job began",
			ErrNotLeader, e.job, time.Until(ld.readyAt).Round(time.Millisecond))
	}
	c, err := e.job.Begin(ctx, ld.lock)
	if err != nil {
		return err
	}
	return c.End(ctx, nil)
}

// Close ends the campaign and releases the lock, and waits until both are
// done, or ctx is. Later calls return nil at once.
func (e *Elector) Close(ctx context.Context) error {
	if e == nil {
		return nil
	}
	e.stop()
	select {
	case <-e.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
