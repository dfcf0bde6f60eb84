package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/semaphore"
)

// Exit statuses of withlock's own making (sysexits.h and the shell's).
const (
	exitUsage       = 64  // EX_USAGE
	exitUnavailable = 69  // EX_UNAVAILABLE
	exitLost        = 75  // EX_TEMPFAIL
	exitCannotRun   = 126 // as the shell: found but cannot be run
	exitNotFound    = 127 // as the shell: not found
	exitSignalBase  = 128 // 128+N: signal N
)

// EnvToken names the environment variable in which, with --fencing, the
// command gets the lock's fencing token.
const EnvToken = "WITHLOCK_TOKEN"

// releaseTimeout bounds the release of the lock after the command. When it
// runs out the connection is closed, which releases the lock all the same.
const releaseTimeout = 10 * time.Second

// forwardedSignals are the signals withlock passes on to the command, and
// that end a wait for the lock.
var forwardedSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT}

func main() {
	// The command is started from the main goroutine, kept on the main
	// thread: on Linux its parent-death signal (see childSysProcAttr) is tied
	// to the thread that started it, and the main thread lives as long as the
	// process.
	runtime.LockOSThread()
	os.Exit(run(os.Args[1:]))
}

// app is one run of withlock.
type app struct {
	o    options
	src  connSource
	red  *redactor
	sigc chan os.Signal
	sem  *semaphore.Semaphore // with --slots
}

// say writes one of withlock's own lines to stderr, secrets redacted.
func (a *app) say(format string, args ...any) {
	msg := "withlock: " + fmt.Sprintf(format, args...) + "\n"
	os.Stderr.WriteString(a.red.clean(msg))
}

// verbosef says, with -v.
func (a *app) verbosef(format string, args ...any) {
	if a.o.verbose {
		a.say(format, args...)
	}
}

// run is withlock: it returns the exit status.
func run(args []string) int {
	o, err := parseArgs(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "withlock: %v\n%s", err, synopsis)
		return exitUsage
	}
	if o.help {
		writeHelp(os.Stdout)
		return 0
	}
	src := chooseSource(o, os.Getenv)
	a := &app{o: o, src: src, red: newRedactor(src, os.Getenv)}

	var path string
	if !o.status {
		// Before connecting: a command that cannot run never takes the lock.
		var code int
		if path, code = a.resolve(o.command[0]); code != 0 {
			return code
		}
	}
	cfg, err := poolConfig(src, a.red)
	if err != nil {
		a.say("%v", err)
		return exitUsage
	}
	if o.slots > 0 {
		cfg.MaxConns = slotsMaxConns
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		a.say("%v", err)
		return exitUsage
	}
	defer pool.Close()
	m := a.mutex(pool)

	a.sigc = make(chan os.Signal, 8)
	signal.Notify(a.sigc, forwardedSignals...)
	defer signal.Stop(a.sigc)

	if o.slots > 0 {
		return a.runSlots(pool, path)
	}
	if o.status {
		code := 0
		if sig := a.untilSignal(func(ctx context.Context) { code = a.status(ctx, pool, m) }); sig != nil {
			return signalStatus(sig)
		}
		return code
	}

	if o.every > 0 {
		return a.runEvery(pool, m, path)
	}

	var l *advisorylock.Lock
	code := 0
	if sig := a.untilSignal(func(ctx context.Context) { l, code = a.acquire(ctx, pool, m) }); sig != nil {
		if l != nil { // granted as the signal came
			_ = a.release(l)
		}
		a.verbosef("got %v while waiting for %s; not running the command", sig, m)
		return signalStatus(sig)
	}
	if l == nil {
		return code
	}
	return a.runLocked(l, path)
}

// resolve finds the command as the shell would, or says why it cannot run
// and returns the shell's status for that.
func (a *app) resolve(name string) (path string, code int) {
	path, err := exec.LookPath(name)
	switch {
	case err == nil:
		return path, 0
	case errors.Is(err, exec.ErrNotFound), errors.Is(err, fs.ErrNotExist):
		a.say("%s: command not found", quoteArg(name))
		return "", exitNotFound
	default:
		a.say("cannot run %s: %v", quoteArg(name), cause(err))
		return "", exitCannotRun
	}
}

// mutex returns the Mutex the options describe.
func (a *app) mutex(pool *pgxpool.Pool) *advisorylock.Mutex {
	opts := []advisorylock.Option{advisorylock.WithKeepalive(a.o.keepalive)}
	if a.o.fencing {
		opts = append(opts, advisorylock.WithFencing())
	}
	if a.o.shared {
		opts = append(opts, advisorylock.Shared())
	}
	if !a.o.nonblock && a.o.timeout > 0 {
		opts = append(opts, advisorylock.WithTimeout(a.o.timeout))
	}
	if a.o.hasKey {
		return advisorylock.NewWithKey(pool, a.o.key, opts...)
	}
	return advisorylock.New(pool, a.o.name, opts...)
}

// untilSignal runs f with a context that the first forwarded signal
// cancels, and returns that signal, or nil when f ended first. It returns only
// once f has.
func (a *app) untilSignal(f func(ctx context.Context)) os.Signal {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(ctx)
	}()
	select {
	case <-done:
		return nil
	case sig := <-a.sigc:
		cancel()
		<-done
		return sig
	}
}

// connect checks that the database answers. It returns 0, or the exit
// status after saying why not. A cancelled ctx returns 0: the caller knows.
func (a *app) connect(ctx context.Context, pool *pgxpool.Pool) int {
	err := pool.Ping(ctx)
	if err == nil || ctx.Err() != nil {
		return 0
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		a.say("cannot connect to %s (settings from %s): %s", connectTarget(ce.Config), a.src.from, connectFailure(ce))
	} else {
		a.say("cannot connect to the database (settings from %s): %s", a.src.from, describe(err))
	}
	return exitUnavailable
}

// acquire connects and takes the lock. It returns the lock, or nil and the
// exit status after saying why (nothing with a conflict, as flock, unless
// -v). When ctx is cancelled it returns nil and 0.
func (a *app) acquire(ctx context.Context, pool *pgxpool.Pool, m *advisorylock.Mutex) (*advisorylock.Lock, int) {
	if code := a.connect(ctx, pool); code != 0 || ctx.Err() != nil {
		return nil, code
	}
	start := time.Now()
	var l *advisorylock.Lock
	var err error
	if a.o.nonblock || a.o.verbose {
		// With -v, a first try tells whether there is a wait to announce.
		l, err = m.TryLock(ctx)
		if !a.o.nonblock && errors.Is(err, advisorylock.ErrLocked) {
			a.say("waiting for %s, held by %s", m, a.describeHolders(ctx, m))
			l, err = m.Lock(ctx)
		}
	} else {
		l, err = m.Lock(ctx)
	}
	switch {
	case err == nil && a.o.fencing:
		a.verbosef("acquired %s (%s) after %v, fencing token %d", m, m.Mode(), roundDuration(time.Since(start)), l.Token())
		return l, 0
	case err == nil:
		a.verbosef("acquired %s (%s) after %v", m, m.Mode(), roundDuration(time.Since(start)))
		return l, 0
	case ctx.Err() != nil:
		return nil, 0
	case errors.Is(err, advisorylock.ErrLocked):
		a.verbosef("%s is held by another session; not waiting (-n)", m)
		return nil, a.o.conflict
	case errors.Is(err, context.DeadlineExceeded) && unreachable(err):
		// The wait lost its session, and no new one could be had by -w's
		// end: the database is away, not the lock busy.
		a.say("cannot lock %s: %s", m, describe(err))
		return nil, exitUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		a.verbosef("timed out after %v waiting for %s (-w)", roundDuration(time.Since(start)), m)
		return nil, a.o.conflict
	default:
		a.say("cannot lock %s: %s", m, describe(err))
		return nil, exitUnavailable
	}
}

// unreachable reports whether a wait ended because no database session could
// be had: a connection refused, or a server that is a hot standby.
func unreachable(err error) bool {
	var ce *pgconn.ConnectError
	return errors.As(err, &ce) || errors.Is(err, advisorylock.ErrStandby)
}

// describeHolders names the sessions holding m's lock, for -v.
func (a *app) describeHolders(ctx context.Context, m *advisorylock.Mutex) string {
	hs, err := m.Holders(ctx)
	if err != nil {
		return "another session"
	}
	var s string
	for _, h := range hs {
		if !h.Granted {
			continue
		}
		if s != "" {
			s += ", "
		}
		s += fmt.Sprintf("backend pid %d", h.PID)
		if h.ApplicationName != "" {
			s += fmt.Sprintf(" (%s)", h.ApplicationName)
		}
	}
	if s == "" {
		return "another session" // it let go in the meantime
	}
	return s
}

// release unlocks l on a context of its own, and says so with -v.
func (a *app) release(l *advisorylock.Lock) error {
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	err := l.Unlock(ctx)
	if err == nil {
		a.verbosef("released %s", a.lockLabel(l))
	}
	return err
}

// runLocked runs the command while holding l, forwarding signals and
// stopping it if the lock is lost, then releases l. It returns the exit
// status.
func (a *app) runLocked(l *advisorylock.Lock, path string) int {
	m := a.lockLabel(l)
	select {
	case sig := <-a.sigc:
		// A signal came as the lock was granted: do not start.
		_ = a.release(l)
		a.verbosef("got %v before the command started; not running it", sig)
		return signalStatus(sig)
	default:
	}

	var env []string
	if a.o.fencing {
		env = append(env, EnvToken+"="+strconv.FormatInt(l.Token(), 10))
	}
	ps, lost, code := a.supervise(l, path, env...)
	if ps == nil {
		if rerr := a.release(l); rerr != nil {
			a.say("releasing %s: %s", m, describe(rerr))
		}
		return code
	}
	status := commandStatus(ps)

	rerr := a.release(l)
	switch {
	case lost:
		a.say("exiting with status %d: the lock was lost while the command ran", exitLost)
		return exitLost
	case errors.Is(rerr, advisorylock.ErrLockLost):
		a.say("lock %s was lost before the command ended: %s; exiting with status %d instead of the command's %d", m, lossReason(rerr), exitLost, status)
		return exitLost
	case rerr != nil:
		// The library closed the connection, which released the lock.
		a.say("releasing %s: %s", m, describe(rerr))
	}
	return status
}

// supervise runs the command, with env added to this process's
// environment, while holding l: it forwards signals, and when l is lost it
// sends the command SIGTERM, then SIGKILL after the grace period. It blocks
// until the command has ended and returns its ProcessState, and whether l
// was lost meanwhile. For a command that cannot start it says why and
// returns a nil ProcessState with the exit status to report.
func (a *app) supervise(l *advisorylock.Lock, path string, env ...string) (ps *os.ProcessState, lost bool, code int) {
	cmd := exec.Command(path, a.o.command[1:]...)
	cmd.Args[0] = a.o.command[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.SysProcAttr = childSysProcAttr()
	if err := cmd.Start(); err != nil {
		code := exitCannotRun
		if errors.Is(err, fs.ErrNotExist) {
			code = exitNotFound
		}
		a.say("cannot run %s: %v", quoteArg(a.o.command[0]), cause(err))
		return nil, false, code
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
			lostc, lost = nil, true
			a.say("lock %s lost while the command ran: %s; sending SIGTERM to the command (pid %d)", a.lockLabel(l), lossReason(l.Err()), cmd.Process.Pid)
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
	return cmd.ProcessState, lost, 0
}

// commandStatus is the exit status to pass on for a command that ended:
// its own, or 128+N when signal N killed it.
func commandStatus(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return exitSignalBase + int(ws.Signal())
	}
	return ps.ExitCode()
}

// signalStatus is 128+N for signal N.
func signalStatus(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return exitSignalBase + int(s)
	}
	return exitSignalBase
}

// roundDuration rounds d for messages.
func roundDuration(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Microsecond * 100)
	}
	return d.Round(time.Millisecond)
}

// cause is the innermost error of a failed exec (the errno), for messages
// that already name the command.
func cause(err error) error {
	for {
		inner := errors.Unwrap(err)
		if inner == nil {
			return err
		}
		err = inner
	}
}

// lossReason says briefly why a lock was lost: the server's message when it
// sent one, else the cause the library gives after ErrLockLost.
func lossReason(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return fmt.Sprintf("%s (SQLSTATE %s)", pgErr.Message, pgErr.Code)
	}
	s := libraryCause(err)
	if rest, ok := strings.CutPrefix(s, strings.TrimPrefix(advisorylock.ErrLockLost.Error(), libraryPrefix)+": "); ok {
		return rest
	}
	return s
}
