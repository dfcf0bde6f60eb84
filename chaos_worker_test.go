package advisorylock_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/fence"
	"github.com/advisorylock/advisorylock/internal/pgtest"
	"github.com/advisorylock/advisorylock/internal/pgwire"
)

// envChaosWorker names the environment variable that makes TestChaosWorker a
// worker process of TestChaos. It holds the worker's chaosWorkerConfig as
// JSON.
const envChaosWorker = "ADVISORYLOCK_CHAOS_WORKER"

// chaosReady is the line a worker prints once it is ready to contend.
const chaosReady = "advisorylock-chaos-worker-ready"

// chaosLockName is the lock every worker contends for.
const chaosLockName = "chaos"

// chaosWorkerConfig is what TestChaos tells a worker process.
type chaosWorkerConfig struct {
	Name      string        // application_name of its sessions: chaos-SLOT.INCARNATION
	DSN       string        // the test database, direct
	Proxy     string        // host:port of the worker's own proxy to the server
	Log       string        // the file it appends its records to
	Keepalive time.Duration // WithKeepalive
	Timeout   time.Duration // WithTimeout
	Seed      uint64        // for the hold times
}

// The records a worker appends to its log, one line each, written with one
// write(2) so that a SIGKILL never leaves half a line (the kernel keeps what
// was written; a killed worker loses at most the record it had not written
// yet). Times are chaosNow readings.
//
//	R at                  the worker is ready to contend
//	B seq start tok call  section seq began: the lock was granted (taken after Lock returned), with token tok, to a Lock called at call
//	E seq end lostAt      section seq ended; lostAt is when the holder was told of the loss, 0 if it was not
//	L seq at              the release of section seq, after it ended, reported ErrLockLost
//	F class at error…     an acquisition or release failed; class is chaosErrorClass's
//	S culprits            the pool still had connections acquired when the loop ended, held by culprits (see settle)
//	Q end pid took sql…   a statement of the worker's (pgx's query tracer), for the diagnosis of a violation
//	W …                   a fenced write (see recWrite)
const (
	recReady  = "R"
	recBegin  = "B"
	recEnd    = "E"
	recLate   = "L"
	recFail   = "F"
	recQuery  = "Q"
	recSettle = "S"
)

// TestChaosWorker is a worker process of TestChaos: the test binary run again
// with envChaosWorker set. Run in any other way it returns at once and passes.
//
// It loops, taking the lock through its own proxy (so that TestChaos can cut
// or freeze this process's network alone), alternating WithLock and
// Lock/Unlock, and records each critical section until its standard input
// closes. Failures the injected faults explain (a timeout, a lost lock, a
// terminated backend, a broken connection) are recorded and retried; any
// other error fails the worker, which TestChaos reports with its output.
func TestChaosWorker(t *testing.T) {
	// Serial: its body runs only in a worker process of TestChaos, as the only test.
	raw, ok := os.LookupEnv(envChaosWorker)
	if !ok {
		return
	}
	var cfg chaosWorkerConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatalf("%s: %v", envChaosWorker, err)
	}
	host, portText, err := net.SplitHostPort(cfg.Proxy)
	if err != nil {
		t.Fatalf("proxy address %q: %v", cfg.Proxy, err)
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		t.Fatalf("proxy port %q: %v", portText, err)
	}
	log, err := os.OpenFile(cfg.Log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	// Closed after the pool's cleanup, whose statements are traced too.
	t.Cleanup(func() { log.Close() })
	w := &chaosWorker{
		t:       t,
		log:     log,
		rng:     rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		name:    cfg.Name,
		timeout: cfg.Timeout,
	}
	pcfg, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	pcfg.MaxConns = 4
	pcfg.ConnConfig.Tracer = chaosTracer{w}
	pcfg.ConnConfig.Host, pcfg.ConnConfig.Port, pcfg.ConnConfig.Fallbacks = host, uint16(port), nil
	// A dial through a frozen proxy would otherwise wait as long as the
	// attempt's context, which has no deadline.
	pcfg.ConnConfig.ConnectTimeout = 2 * time.Second
	pcfg.ConnConfig.RuntimeParams["application_name"] = cfg.Name
	pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		defer pool.Close()
		w.settle(pool)
		pgtest.AssertPoolClean(t, pool)
	})

	// The parent closes standard input to stop the worker; so does the
	// parent's death.
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop()
	}()

	w.m = advisorylock.New(pool, chaosLockName, advisorylock.WithFencing(),
		advisorylock.WithKeepalive(cfg.Keepalive), advisorylock.WithTimeout(cfg.Timeout))
	w.res = fence.New(pool, chaosLockName)
	w.record(recReady, chaosNow())
	fmt.Println(chaosReady)
	for seq := 1; ctx.Err() == nil; seq++ {
		var err error
		if seq%2 == 0 {
			err = w.withLock(ctx, seq)
		} else {
			err = w.lockUnlock(ctx, seq)
		}
		if err == nil {
			continue
		}
		class := chaosErrorClass(ctx, err)
		if class == "" {
			t.Errorf("attempt %d: unexpected error: %v", seq, err)
			w.record(recFail, "unexpected", chaosNow(), oneLine(err.Error()))
			return
		}
		w.record(recFail, class, chaosNow(), oneLine(err.Error()))
	}
}

// chaosWorker is one worker process's loop state.
type chaosWorker struct {
	t       *testing.T
	log     *os.File
	m       *advisorylock.Mutex
	res     *fence.Resource // written in each section, and after it
	rng     *rand.Rand
	name    string        // its application_name
	timeout time.Duration // the lock's WithTimeout, also a write's bound
}

// hold picks how long a section lasts: some shorter than the library's watch
// delay (no watcher runs yet), most short, some long enough for faults to hit
// an idle, watched holder, and a few longer than TestChaos's notification
// bound, so that a holder never told of a loss would show as an overlap
// longer than the bound.
func (w *chaosWorker) hold() time.Duration {
	switch p := w.rng.IntN(100); {
	case p < 10:
		return 0
	case p < 65:
		return time.Millisecond + durationN(w.rng, 100*time.Millisecond)
	case p < 95:
		return 100*time.Millisecond + durationN(w.rng, 400*time.Millisecond)
	default:
		return 1500*time.Millisecond + durationN(w.rng, 1500*time.Millisecond)
	}
}

// withLock runs section seq under WithLock. The section writes to the fenced
// resource, then ends when its time is up, when fn's context is cancelled, or
// when the worker stops; then, before the release, it writes again, heedless
// of a loss.
func (w *chaosWorker) withLock(ctx context.Context, seq int) error {
	hold := w.hold()
	lostInSection := false
	called := chaosNow()
	_, err := advisorylock.WithLock(ctx, w.m, func(fctx context.Context) (struct{}, error) {
		l, _ := advisorylock.LockFromContext(fctx)
		w.record(recBegin, seq, chaosNow(), l.Token(), called)
		w.write(ctx, seq, l.Token(), fctx.Done())
		timer := time.NewTimer(hold)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-fctx.Done():
		}
		// The loss is checked before the clock is read: lostAt is then never
		// earlier than the moment the holder was told.
		lostInSection = fctx.Err() != nil && errors.Is(context.Cause(fctx), advisorylock.ErrLockLost)
		end := chaosNow()
		w.record(recEnd, seq, end, lostAt(lostInSection, end))
		w.write(ctx, seq, l.Token(), nil)
		return struct{}{}, nil
	})
	if errors.Is(err, advisorylock.ErrLockLost) && !lostInSection {
		w.record(recLate, seq, chaosNow())
	}
	return err
}

// lockUnlock runs section seq between Lock and Unlock, watching Done, with
// the writes withLock makes.
func (w *chaosWorker) lockUnlock(ctx context.Context, seq int) error {
	hold := w.hold()
	called := chaosNow()
	l, err := w.m.Lock(ctx)
	if err != nil {
		return err
	}
	w.record(recBegin, seq, chaosNow(), l.Token(), called)
	w.write(ctx, seq, l.Token(), l.Done())
	timer := time.NewTimer(hold)
	select {
	case <-timer.C:
	case <-l.Done():
	case <-ctx.Done():
	}
	timer.Stop()
	// Done closes only on release or loss, and this lock is not released yet.
	lost := false
	select {
	case <-l.Done():
		lost = errors.Is(l.Err(), advisorylock.ErrLockLost)
	default:
	}
	end := chaosNow()
	w.record(recEnd, seq, end, lostAt(lost, end))
	w.write(ctx, seq, l.Token(), nil)
	uctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = l.Unlock(uctx)
	if errors.Is(err, advisorylock.ErrLockLost) && !lost {
		w.record(recLate, seq, chaosNow())
	}
	return err
}

// settle waits, up to 5s, until no connection of pool is acquired, and
// records who held one if any was: a connection the library still holds after
// its calls returned would be a leak, while pgxpool's own health check (which
// a destroyed connection triggers 500ms later) acquires every idle connection
// for a moment. Then pgtest.AssertPoolClean checks that no pooled connection holds an
// advisory lock.
func (w *chaosWorker) settle(pool *pgxpool.Pool) {
	deadline := time.Now().Add(5 * time.Second)
	for recorded := false; pool.Stat().AcquiredConns() != 0; {
		if !recorded {
			w.record(recSettle, chaosCulprits())
			recorded = true
		}
		if time.Now().After(deadline) {
			w.t.Errorf("%d connections still acquired from the pool 5s after the loop ended", pool.Stat().AcquiredConns())
			return
		}
		time.Sleep(5 * time.Millisecond) // polling a condition nothing signals
	}
}

// chaosCulprits names the functions, of the library, pgxpool and puddle, that
// the goroutines other than the caller are running, from a dump of every
// goroutine's stack: whoever holds a pooled connection is among them.
func chaosCulprits() string {
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	seen := make(map[string]bool)
	var found []string
	for i, g := range strings.Split(stacks, "\n\n") {
		if i == 0 {
			continue // the caller's own goroutine
		}
		for _, line := range strings.Split(g, "\n") {
			if strings.HasPrefix(line, "\t") || strings.HasPrefix(line, "created by ") || !strings.Contains(line, "(") {
				continue
			}
			fn := line[:strings.LastIndex(line, "(")]
			if fn = fn[strings.LastIndex(fn, "/")+1:]; seen[fn] {
				continue
			}
			if strings.HasPrefix(fn, "advisorylock.") || strings.HasPrefix(fn, "pgxpool.") || strings.HasPrefix(fn, "puddle.") {
				seen[fn] = true
				found = append(found, fn)
			}
		}
	}
	if len(found) == 0 {
		return "none-running"
	}
	return strings.Join(found, ",")
}

func lostAt(lost bool, at int64) int64 {
	if lost {
		return at
	}
	return 0
}

// record appends one record to the log, in one write. It is safe for
// concurrent use: a write to a file opened with O_APPEND lands whole.
func (w *chaosWorker) record(kind string, fields ...any) {
	var b strings.Builder
	b.WriteString(kind)
	for _, f := range fields {
		fmt.Fprint(&b, " ", f)
	}
	b.WriteByte('\n')
	if _, err := w.log.WriteString(b.String()); err != nil {
		w.t.Errorf("writing a record: %v", err)
	}
}

// oneLine makes s fit a record's last field.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > 160 {
		s = string(r[:160]) + "…"
	}
	return s
}

// chaosTracer records every statement the worker's connections run (the
// library's lock, unlock and cleanup statements), with the server process
// that ran it, so that a violation can be told apart from a checker's error.
type chaosTracer struct{ w *chaosWorker }

type chaosTraceKey struct{}

type chaosTraceStart struct {
	at  int64
	sql string
}

func (tr chaosTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	return context.WithValue(ctx, chaosTraceKey{}, chaosTraceStart{at: chaosNow(), sql: data.SQL})
}

func (tr chaosTracer) TraceQueryEnd(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryEndData) {
	start, _ := ctx.Value(chaosTraceKey{}).(chaosTraceStart)
	end := chaosNow()
	outcome := "ok"
	if data.Err != nil {
		outcome = "error: " + data.Err.Error()
	}
	tr.w.record(recQuery, end, conn.PgConn().PID(), end-start.at, oneLine(start.sql+" → "+outcome))
}

// chaosErrorClass names the fault that explains err, a failed acquisition or
// release, or returns "" when no injected fault explains it.
func chaosErrorClass(ctx context.Context, err error) string {
	var pgErr *pgconn.PgError
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	switch {
	case errors.Is(err, advisorylock.ErrLockLost):
		return "lost"
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		return "stopped"
	case errors.Is(err, context.DeadlineExceeded):
		// WithTimeout ran out: the lock was busy, or the network frozen.
		return "timeout"
	case errors.As(err, &pgErr):
		// 57P01: pg_terminate_backend; class 08: connection exceptions.
		if pgErr.Code == "57P01" || strings.HasPrefix(pgErr.Code, "08") {
			return "terminated"
		}
		return ""
	case errors.As(err, &connectErr):
		return "connect"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, pgconn.ErrConnClosed), errors.As(err, &netErr),
		errors.Is(err, pgwire.ErrClosed):
		// A cut, a lock session gone silent, or a session ended while its
		// statement ran.
		return "connection"
	}
	return ""
}

// durationN returns a random duration in [0, d), for d > 0.
func durationN(rng *rand.Rand, d time.Duration) time.Duration {
	return time.Duration(rng.Int64N(int64(d)))
}
