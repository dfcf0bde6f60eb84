package election

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/advisorylock/advisorylock"
)

// Sentinel errors of leader election. Match them with [errors.Is]. Bad input
// (an empty name, a nil pool, a nil Election, Leadership or function, an
// invalid identity or duration) matches [advisorylock.ErrInvalidArgument].
var (
	// ErrClosed reports a call on an Election after Close, or a campaign
	// that Close ended.
	ErrClosed = errors.New("advisorylock: election closed")

	// ErrCampaigning reports Campaign or Run called on an Election that is
	// already campaigning or leading: an Election is one candidate.
	ErrCampaigning = errors.New("advisorylock: already campaigning or leading")
)

// errPrevRelease introduces the failure to confirm that the previous
// leadership's session let go of the lock.
var errPrevRelease = errors.New("confirming the previous leadership's release")

// invalid returns an error about bad input, matching
// advisorylock.ErrInvalidArgument.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{advisorylock.ErrInvalidArgument}, args...)...)
}

// check reports, as an error of op, bad input or a closed Election.
func (e *Election) check(op string) error {
	if e == nil {
		return &advisorylock.Error{Op: op, Err: invalid("nil Election")}
	}
	if e.err != nil {
		return e.errorf(op, e.err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return e.errorf(op, ErrClosed)
	}
	return nil
}

// errorf returns the error of op on e: errs in a row, most general first. Its
// text says "advisorylock: " once, however many of errs say it.
func (e *Election) errorf(op string, errs ...error) error {
	err := errs[0]
	if len(errs) > 1 {
		err = fmt.Errorf("%w: %w", errs[0], errs[1])
	}
	return &advisorylock.Error{Op: op, Lock: "election " + strconv.Quote(e.name), Err: err}
}

// relabel reports an error of the election lock as one of op on e: the
// caller called Campaign, not Lock.
func (e *Election) relabel(op string, err error) error {
	return e.errorf(op, unlabel(err))
}

// unlabel returns the cause of an *advisorylock.Error, dropping the operation
// and lock it names, for an error of the election to name its own.
func unlabel(err error) error {
	if lerr, ok := err.(*advisorylock.Error); ok && lerr.Err != nil {
		return lerr.Err
	}
	return err
}
