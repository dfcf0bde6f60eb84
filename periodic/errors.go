package periodic

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/advisorylock/advisorylock"
)

// Sentinel errors of periodic jobs. Match them with [errors.Is]. Bad input (an
// empty name, a nil pool, lock or function, a period that is not positive, an
// invalid option) matches [advisorylock.ErrInvalidArgument], and a privilege
// the role lacks on the runs table or its schema
// [advisorylock.ErrPrivilege].
var (
	// ErrNotDue reports a run not begun because the last successful run
	// started less than the period ago, or the last run of any outcome less
	// than the minimum spacing ago ([WithMinSpacing]). The error is a
	// *[NotDueError], which says when the next run is due.
	ErrNotDue = errors.New("advisorylock: run not due")

	// ErrMaxRunTime is the cause of the end of fn's context when a run
	// outlives [WithMaxRunTime]; such a run does not count. It matches
	// [context.DeadlineExceeded] too.
	ErrMaxRunTime error = &maxRunTimeError{}
)

type maxRunTimeError struct{}

func (*maxRunTimeError) Error() string { return "advisorylock: run exceeded its maximum run time" }

func (*maxRunTimeError) Is(target error) bool { return target == context.DeadlineExceeded }

// A NotDueError reports a run not begun, and why: it matches [ErrNotDue].
type NotDueError struct {
	// Status is the job's record as the check found it.
	Status Status
}

// Error says when the last run and the last successful one started, and when
// the next run is due, all on the server's clock.
func (e *NotDueError) Error() string {
	var b strings.Builder
	b.WriteString(ErrNotDue.Error())
	s := e.Status
	if s.LastSuccess.Token != 0 {
		fmt.Fprintf(&b, ": last successful run #%d started %s ago", s.LastSuccess.Token, ago(s.Now, s.LastSuccess.StartedAt))
	}
	if s.Last.Token != 0 && s.Last.Token != s.LastSuccess.Token {
		fmt.Fprintf(&b, "; run #%d started %s ago", s.Last.Token, ago(s.Now, s.Last.StartedAt))
	}
	if !s.Due.IsZero() {
		fmt.Fprintf(&b, "; next due in %s", ago(s.Due, s.Now))
	}
	return b.String()
}

// Is reports whether target is ErrNotDue.
func (e *NotDueError) Is(target error) bool { return target == ErrNotDue }

// ago formats the time from then to now, two server times, for messages.
func ago(now, then time.Time) time.Duration {
	d := now.Sub(then)
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(100 * time.Millisecond)
}

// A Failure is an error whose text [Claim.End] records as the reason a run
// failed, as it is: "exit status 3". The text of any other error is never
// recorded, since it may carry what the database should not keep (a
// connection string, a customer's data); a few words of the package's stand
// in for it (see [Run.Failure]).
type Failure string

func (f Failure) Error() string { return string(f) }

// Failure descriptions the package records (see [Run.Failure]).
const (
	failError      = "error"
	failPanic      = "panic"
	failAborted    = "aborted" // runtime.Goexit
	failLost       = "lock lost"
	failMaxRunTime = "max run time exceeded"
	failCanceled   = "canceled"
	failDeadline   = "deadline exceeded"
)

// maxFailureLen bounds a recorded Failure.
const maxFailureLen = 200

// describeFailure returns the words recorded for a run that ended with err.
func describeFailure(err error) string {
	var f Failure
	switch {
	case errors.As(err, &f):
		s := strings.ToValidUTF8(strings.ReplaceAll(string(f), "\x00", ""), "?")
		if len(s) > maxFailureLen {
			s = strings.ToValidUTF8(s[:maxFailureLen], "")
		}
		if s == "" {
			return failError
		}
		return s
	case errors.Is(err, advisorylock.ErrLockLost):
		return failLost
	case errors.Is(err, ErrMaxRunTime):
		return failMaxRunTime
	case errors.Is(err, context.Canceled):
		return failCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return failDeadline
	}
	return failError
}

// invalid returns an error about bad input, matching
// advisorylock.ErrInvalidArgument.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{advisorylock.ErrInvalidArgument}, args...)...)
}

// errorf returns the error of op on j: errs in a row, most general first,
// under one "advisorylock: " prefix.
func (j *Job) errorf(op string, errs ...error) error {
	err := unlabel(errs[len(errs)-1])
	for i := len(errs) - 2; i >= 0; i-- {
		err = fmt.Errorf("%w: %w", unlabel(errs[i]), err)
	}
	return &advisorylock.Error{Op: op, Lock: j.String(), Err: err}
}

// unlabel returns the cause of an *advisorylock.Error, dropping the operation
// and lock it names, for an error of the job to name its own.
func unlabel(err error) error {
	if lerr, ok := err.(*advisorylock.Error); ok && lerr.Err != nil {
		return lerr.Err
	}
	return err
}
