package periodic

import (
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/dbobject"
)

// A Job is work that runs at most once per period across every process that
// shares the database: see the package documentation. It is safe for
// concurrent use, holds no state on the server between calls and needs no
// closing. The zero Job is not usable; create one with [New].
type Job struct {
	name   string
	period time.Duration
	cfg    config
	pool   *pgxpool.Pool
	m      *advisorylock.Mutex
	key    advisorylock.Key
	table  string           // the runs table, qualified and quoted
	tbl    *dbobject.Handle // the runs table, as this process knows it
	sql    statements
	err    error // bad input, reported by every call
}

// New returns the job called name, run at most once per period, recorded in
// the runs table of the database pool connects to. The name is also the
// job's lock: an [advisorylock.Mutex] of the same name (and withlock) excludes
// its runs. New does no I/O and never fails: a nil pool, an empty name, a
// period that is not positive or an invalid option is reported by every call
// on the Job, before any round trip, as an error matching
// [advisorylock.ErrInvalidArgument].
func New(pool *pgxpool.Pool, name string, period time.Duration, opts ...Option) *Job {
	j := &Job{name: name, period: period, cfg: newConfig(opts), pool: pool, key: advisorylock.KeyFromName(name)}
	switch {
	case j.cfg.err != nil:
		j.err = j.cfg.err
	case pool == nil:
		j.err = invalid("nil pool")
	case checkName(name) != nil:
		j.err = checkName(name)
	case period <= 0:
		j.err = invalid("period %v: not positive", period)
	}
	if j.err != nil {
		return j
	}
	// On a lock session (the default), a held lock costs no pooled
	// connection: a run that held one, then waited for another for its
	// statements, could deadlock with others on a small pool.
	j.m = advisorylock.New(pool, name, j.cfg.lockOptions...)
	if j.m.Mode() != advisorylock.ModeExclusive {
		j.err = invalid("a shared lock would let runs overlap")
		return j
	}
	j.table = qualified(j.cfg.schema)
	j.tbl = tableFor(pool, j.cfg.schema)
	j.sql = newStatements(j.table)
	return j
}

// Name returns the job's name.
func (j *Job) Name() string { return j.name }

// Period returns the job's period.
func (j *Job) Period() time.Duration { return j.period }

// Identity returns who this process is in the runs table ([WithIdentity]).
func (j *Job) Identity() string { return j.cfg.identity }

// Schema returns the schema of the runs table ([WithSchema]).
func (j *Job) Schema() string { return j.cfg.schema }

// Mutex returns the job's lock: the advisory lock of its name, held on the
// package advisorylock's lock sessions (unless [advisorylock.PinConnection]), with the
// options of [WithLockOptions]. [Job.Run] takes it with TryLock; a caller of
// [Job.Begin] takes it itself (or any exclusive lock of the job's name). It
// is nil when the Job's input is bad.
func (j *Job) Mutex() *advisorylock.Mutex { return j.m }

// String describes the job for logs and errors: job "name".
func (j *Job) String() string { return "job " + strconv.Quote(j.name) }

// check reports bad input as an error of op.
func (j *Job) check(op string) error {
	if j == nil {
		return &advisorylock.Error{Op: op, Err: invalid("nil Job")}
	}
	if j.err != nil {
		return j.errorf(op, j.err)
	}
	return nil
}
