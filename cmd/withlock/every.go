package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/periodic"
)

// EnvRun names the environment variable that tells the command of
// withlock --every its run's number, a fencing token (see package periodic).
const EnvRun = "WITHLOCK_RUN"

// setEvery parses --every's period.
func setEvery(o *options, v string) error {
	d, err := parseDuration(v)
	if err != nil {
		return usagef("--every: %v", err)
	}
	if d == 0 {
		return usagef("--every: the period must be positive")
	}
	o.every = d
	return nil
}

// checkEvery reports the options that do not go with --every or --schema.
func checkEvery(o options) error {
	switch {
	case o.hasSchema && o.every == 0 && !o.status:
		return usagef("--schema goes with --every or --status")
	case o.every == 0:
		return nil
	case o.hasKey:
		return usagef("--every needs a lock name: runs are recorded by name, not by key")
	case o.shared:
		return usagef("--every takes the lock exclusively: with -s runs could overlap")
	}
	return nil
}

// job returns the periodic job of the lock's name: its runs table and its
// period (--every; for --status alone, which reads the record, any).
func (a *app) job(pool *pgxpool.Pool) *periodic.Job {
	opts := []periodic.Option{periodic.WithLockOptions(advisorylock.WithKeepalive(a.o.keepalive))}
	if a.o.hasSchema {
		opts = append(opts, periodic.WithSchema(a.o.schema))
	}
	period := a.o.every
	if period == 0 {
		period = time.Hour
	}
	return periodic.New(pool, a.o.name, period, opts...)
}

// runEvery is withlock --every: it takes the lock (at once, or as -n and -w
// say), begins a run if none succeeded within the period, runs the command
// with the run's number in WITHLOCK_RUN, records how it ended while still
// holding the lock, and releases the lock. It returns the exit status: 0
// without running the command when a run is under way elsewhere or not due
// (-v says which), else the command's, as withlock's is without --every.
func (a *app) runEvery(pool *pgxpool.Pool, m *advisorylock.Mutex, path string) int {
	job := a.job(pool)
	var l *advisorylock.Lock
	code := 0
	if sig := a.untilSignal(func(ctx context.Context) { l, code = a.acquireEvery(ctx, pool, m) }); sig != nil {
		if l != nil { // granted as the signal came
			_ = a.release(l)
		}
		a.verbosef("got %v while waiting for %s; not running the command", sig, m)
		return signalStatus(sig)
	}
	if l == nil {
		return code
	}

	var c *periodic.Claim
	var err error
	sig := a.untilSignal(func(ctx context.Context) { c, err = job.Begin(ctx, l) })
	switch {
	case sig != nil:
		if c != nil {
			a.endRun(c, m, periodic.Failure("not started: withlock got "+sig.String()))
		}
		_ = a.release(l)
		a.verbosef("got %v before the command started; not running it", sig)
		return signalStatus(sig)
	case errors.Is(err, periodic.ErrNotDue):
		_ = a.release(l)
		a.verbosef("not running the command: %s", notDue(err, m, a.o.every))
		return 0
	case errors.Is(err, advisorylock.ErrInvalidArgument):
		_ = a.release(l)
		a.say("%s", libraryCause(err))
		return exitUsage
	case err != nil:
		_ = a.release(l)
		a.say("cannot begin a run of %s: %s", m, describe(err))
		return exitUnavailable
	}
	token := c.Run().Token
	a.verbosef("run #%d of %s begun", token, m)

	status, failure := a.runCommand(l, path, token)
	if lerr := l.Err(); lerr != nil {
		failure = lerr // what ended the command, if it failed: "lock lost"
	}
	endErr := a.endRun(c, m, failure)
	rerr := a.release(l)
	lost := errors.Is(l.Err(), advisorylock.ErrLockLost) || errors.Is(endErr, advisorylock.ErrLockLost)
	switch {
	case lost:
		a.say("exiting with status %d: the lock was lost while the command ran; run #%d does not count", exitLost, token)
		return exitLost
	case endErr != nil && status == 0:
		a.say("run #%d of %s succeeded, but its success could not be recorded, so it does not count: %s", token, m, describe(endErr))
		return exitUnavailable
	case rerr != nil:
		a.say("releasing %s: %s", m, describe(rerr))
	}
	return status
}

// acquireEvery takes the lock for --every. Without -n or -w it does not wait:
// a lock held elsewhere is a run under way, and withlock exits 0 without
// running the command. With them, as without --every.
func (a *app) acquireEvery(ctx context.Context, pool *pgxpool.Pool, m *advisorylock.Mutex) (*advisorylock.Lock, int) {
	if a.o.nonblock || a.o.hasTimeout {
		return a.acquire(ctx, pool, m)
	}
	if code := a.connect(ctx, pool); code != 0 || ctx.Err() != nil {
		return nil, code
	}
	l, err := m.TryLock(ctx)
	switch {
	case err == nil:
		return l, 0
	case ctx.Err() != nil:
		return nil, 0
	case errors.Is(err, advisorylock.ErrLocked):
		a.verbosef("not running the command: %s is held, by %s: a run is under way", m, a.describeHolders(ctx, m))
		return nil, 0
	default:
		a.say("cannot lock %s: %s", m, describe(err))
		return nil, exitUnavailable
	}
}

// notDue says why a run was not due, from the server's record.
func notDue(err error, m *advisorylock.Mutex, every time.Duration) string {
	var nd *periodic.NotDueError
	if !errors.As(err, &nd) || nd.Status.LastSuccess.Token == 0 {
		return libraryCause(err)
	}
	s := nd.Status
	return fmt.Sprintf("the last successful run of %s, #%d by %s, began %v ago; the next is due in %v (--every %v)",
		m, s.LastSuccess.Token, s.LastSuccess.By, roundDuration(s.Now.Sub(s.LastSuccess.StartedAt)),
		roundDuration(s.Due.Sub(s.Now)), every)
}

// endRun records how the run ended, on a context of its own, and says so
// with -v; it returns End's error.
func (a *app) endRun(c *periodic.Claim, m *advisorylock.Mutex, failure error) error {
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	err := c.End(ctx, failure)
	switch {
	case err != nil:
	case failure != nil:
		a.verbosef("run #%d of %s recorded as failed (%v): the next attempt runs again", c.Run().Token, m, failure)
	default:
		a.verbosef("run #%d of %s recorded as succeeded", c.Run().Token, m)
	}
	return err
}

// runCommand runs the command while holding l, as runLocked does (signals
// forwarded, SIGTERM then SIGKILL when the lock is lost), with the run's
// number in the environment (and with --fencing the lock's token). It returns the exit status and, unless the
// command succeeded, the failure to record.
func (a *app) runCommand(l *advisorylock.Lock, path string, token int64) (int, error) {
	m := l.Mutex()
	select {
	case sig := <-a.sigc:
		// A signal came as the run began: do not start.
		a.verbosef("got %v before the command started; not running it", sig)
		return signalStatus(sig), periodic.Failure("not started: withlock got " + sig.String())
	default:
	}

	cmd := exec.Command(path, a.o.command[1:]...)
	cmd.Args[0] = a.o.command[0]
	cmd.Env = append(os.Environ(), EnvRun+"="+strconv.FormatInt(token, 10))
	if a.o.fencing {
		cmd.Env = append(cmd.Env, EnvToken+"="+strconv.FormatInt(l.Token(), 10))
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = childSysProcAttr()
	if err := cmd.Start(); err != nil {
		code := exitCannotRun
		if errors.Is(err, fs.ErrNotExist) {
			code = exitNotFound
		}
		a.say("cannot run %s: %v", quoteArg(a.o.command[0]), cause(err))
		return code, periodic.Failure(fmt.Sprintf("cannot run the command: %v", cause(err)))
	}

	waitc := make(chan error, 1)
	go func() { waitc <- cmd.Wait() }()
	lostc := l.Done()
	var killTimer *time.Timer
	var killc <-chan time.Time
	for waiting := true; waiting; {
		select {
		case <-waitc:
			waiting = false
		case sig := <-a.sigc:
			if fromTerminal(sig) {
				continue // the command got it from the terminal too
			}
			_ = cmd.Process.Signal(sig) // fails only if it has just exited
		case <-lostc:
			lostc = nil
			a.say("lock %s lost while the command ran: %s; sending SIGTERM to the command (pid %d)", m, lossReason(l.Err()), cmd.Process.Pid)
			_ = cmd.Process.Signal(syscall.SIGTERM)
			killTimer = time.NewTimer(a.o.grace)
			killc = killTimer.C
		case <-killc:
			killc = nil
			a.say("the command is still running %v after SIGTERM; sending SIGKILL", a.o.grace)
			_ = cmd.Process.Kill()
		}
	}
	if killTimer != nil {
		killTimer.Stop()
	}
	status := commandStatus(cmd.ProcessState)
	switch ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); {
	case ok && ws.Signaled():
		return status, periodic.Failure("killed by signal " + strconv.Itoa(int(ws.Signal())) + " (" + ws.Signal().String() + ")")
	case status != 0:
		return status, periodic.Failure("exit status " + strconv.Itoa(status))
	}
	return 0, nil
}
