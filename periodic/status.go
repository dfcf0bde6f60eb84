package periodic

import (
	"context"
	"time"

	"github.com/advisorylock/advisorylock/internal/dbobject"
)

// A Run is one run of a job as the runs table records it. Its times are the
// server's clock.
type Run struct {
	// Token is the run's number: 1 for a name's first run, then one more for
	// each run begun, whatever became of the previous one. Runs of a name are
	// serialised by its lock, so the token is a fencing token: a later run
	// always has a greater one, and a store that refuses writes carrying a
	// token below the greatest it has seen refuses a run whose lock was lost.
	// 0 in a [Status] means there is no such run.
	Token int64
	// StartedAt is when the run began.
	StartedAt time.Time
	// By is the identity of the process that ran it ([WithIdentity]).
	By string
	// FinishedAt is when the run ended; zero while it runs, and for a run
	// whose process died.
	FinishedAt time.Time
	// Failure says why the run failed, in a few words: "error" (fn returned
	// one), "panic", "lock lost", "max run time exceeded", "canceled",
	// "deadline exceeded", or a [Failure]'s text. It is "" for a run that
	// succeeded or has not ended.
	Failure string
}

// A Status is a job's record in the runs table.
type Status struct {
	// Last is the last run begun, whatever its outcome.
	Last Run
	// LastSuccess is the last successful run.
	LastSuccess Run
	// Held reports whether the job's lock is held now (a run is under way,
	// or something else holds the lock of the job's name). [NotDueError]
	// leaves it false: the check runs under the lock.
	Held bool
	// Now is the server's clock when the record was read.
	Now time.Time
	// Due is when the next run may begin, on the server's clock: the period
	// after LastSuccess began, or the minimum spacing after Last began,
	// whichever is later. It is zero when no run has succeeded and no
	// spacing applies.
	Due time.Time
}

// Status reads the job's record, blocking for one query. It creates nothing:
// before the runs table exists it returns a Status without runs. It fails
// with the query's error (ctx's when ctx ends it), an error matching
// [advisorylock.ErrPrivilege] without USAGE on the schema or SELECT on the
// table, or [advisorylock.ErrInvalidArgument].
func (j *Job) Status(ctx context.Context) (Status, error) {
	if err := j.check("status"); err != nil {
		return Status{}, err
	}
	classid, objid, subid := lockTag(j.key)
	var s Status
	var rec recordColumns
	err := j.pool.QueryRow(ctx, j.sql.status, j.name, classid, objid, subid).
		Scan(append([]any{&s.Now, &s.Held}, rec.dest()...)...)
	if sqlState(err) == codeUndefinedTable {
		// No run was ever recorded here.
		err = j.pool.QueryRow(ctx, j.sql.held, classid, objid, subid).Scan(&s.Now, &s.Held)
	}
	if sqlState(err) == codeInsufficientPriv {
		// Which privilege: USAGE on the schema, or SELECT on the table.
		obj := j.tbl.Object()
		obj.Privileges = []string{"SELECT"}
		if derr := dbobject.Ensure(ctx, j.pool, obj); derr != nil {
			err = j.explain(derr)
		}
	}
	if err != nil {
		return Status{}, j.errorf("status", err)
	}
	s.Last, s.LastSuccess = rec.runs()
	s.Due = j.due(s)
	return s, nil
}

// due is when the next run may begin, given the record s.
func (j *Job) due(s Status) time.Time {
	var due time.Time
	if s.LastSuccess.Token != 0 {
		due = s.LastSuccess.StartedAt.Add(j.period)
	}
	if s.Last.Token != 0 && j.cfg.minSpacing > 0 {
		if d := s.Last.StartedAt.Add(j.cfg.minSpacing); d.After(due) {
			due = d
		}
	}
	return due
}

// recordColumns receives a row of the runs table, as the statements list its
// columns (run, started_at, started_by, finished_at, failure, success_run,
// success_started_at, success_finished_at, success_by); any may be null.
type recordColumns struct {
	run, successRun                     *int64
	startedAt, finishedAt               *time.Time
	successStartedAt, successFinishedAt *time.Time
	startedBy, failure, successBy       *string
}

func (c *recordColumns) dest() []any {
	return []any{&c.run, &c.startedAt, &c.startedBy, &c.finishedAt, &c.failure,
		&c.successRun, &c.successStartedAt, &c.successFinishedAt, &c.successBy}
}

// runs returns the last run and the last successful run.
func (c *recordColumns) runs() (last, success Run) {
	last = Run{Token: deref(c.run), StartedAt: deref(c.startedAt), By: deref(c.startedBy),
		FinishedAt: deref(c.finishedAt), Failure: deref(c.failure)}
	success = Run{Token: deref(c.successRun), StartedAt: deref(c.successStartedAt), By: deref(c.successBy),
		FinishedAt: deref(c.successFinishedAt)}
	return last, success
}

// deref returns *p, or the zero value for nil.
func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
