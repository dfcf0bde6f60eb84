package semaphore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
	"github.com/advisorylock/advisorylock/internal/pgwire"
	"github.com/advisorylock/advisorylock/semaphore"
)

// envChaosWorker names the environment variable that makes TestChaosWorker a
// worker process of TestChaos; it holds the worker's chaosWorkerConfig as
// JSON.
const envChaosWorker = "ADVISORYLOCK_SEMAPHORE_CHAOS_WORKER"

// chaosReady is the line a worker prints once it is ready to contend.
const chaosReady = "advisorylock-semaphore-chaos-worker-ready"

// chaosName is the semaphore every worker contends for.
const chaosName = "chaos"

// chaosWorkerConfig is what TestChaos tells a worker process.
type chaosWorkerConfig struct {
	Name      string // application_name of its sessions: semchaos-SLOT.INCARNATION
	DSN       string // the test database, direct
	Proxy     string // host:port of the worker's own proxy to the server
	Log       string // the file it appends its records to
	Slots     int
	Keepalive time.Duration // the slots' WithKeepalive
	Timeout   time.Duration // WithTimeout
	Recheck   time.Duration // WithRecheck
	Seed      uint64        // for the hold times
}

// The records a worker appends to its log, one line each, each in one
// write(2), so that a SIGKILL never leaves half a line. Times are chaosNow
// readings.
//
//	R at                  ready to contend
//	B seq slot start      section seq began on slot (read after Lock returned)
//	E seq end lostAt      section seq ended; lostAt is when it was told the slot was lost, 0 if not
//	L seq at              the release of section seq, after it ended, reported ErrLockLost
//	F class at error…     an acquisition or release failed, explained by a fault of class
const (
	recReady = "R"
	recBegin = "B"
	recEnd   = "E"
	recLate  = "L"
	recFail  = "F"
)

// TestChaosWorker is a worker process of TestChaos: the test binary run again
// with envChaosWorker set. Run in any other way it returns at once and passes.
// It loops until its standard input closes, taking a slot of the semaphore
// through its own proxy, alternating WithLock and Lock/Unlock, and records
// each critical section. Failures a fault explains are recorded and retried;
// any other fails the worker, which TestChaos reports with its output.
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
		t.Fatal(err)
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		t.Fatal(err)
	}
	log, err := os.OpenFile(cfg.Log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	w := &chaosWorker{t: t, log: log, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))}
	pcfg, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	pcfg.MaxConns = 4
	pcfg.ConnConfig.Host, pcfg.ConnConfig.Port, pcfg.ConnConfig.Fallbacks = host, uint16(port), nil
	// A dial through a frozen proxy would otherwise wait as long as the
	// attempt's context, which may have no deadline.
	pcfg.ConnConfig.ConnectTimeout = 2 * time.Second
	pcfg.ConnConfig.RuntimeParams["application_name"] = cfg.Name
	pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		defer pool.Close()
		pgtest.AssertPoolClean(t, pool)
	})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	w.s = semaphore.New(pool, chaosName, cfg.Slots, semaphore.WithTimeout(cfg.Timeout), semaphore.WithRecheck(cfg.Recheck),
		semaphore.WithSlotOptions(advisorylock.WithKeepalive(cfg.Keepalive)))
	w.record(recReady, chaosNow())
	fmt.Println(chaosReady)
	for seq := 1; ctx.Err() == nil; seq++ {
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
		if class == "connect" || class == "starting" {
			// The server is restarting, or the network is cut off: no
			// point in hammering it.
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// chaosWorker is one worker process's loop state.
type chaosWorker struct {
	t   *testing.T
	log *os.File
	s   *semaphore.Semaphore
	rng *rand.Rand
}

// hold picks how long a section lasts: some shorter than the library's watch
// delay, most short, some long enough for faults to hit an idle holder, a few
// longer than TestChaos's notification bound.
func (w *chaosWorker) hold() time.Duration {
	switch p := w.rng.IntN(100); {
	case p < 10:
		return 0
	case p < 65:
		return time.Millisecond + time.Duration(w.rng.Int64N(int64(100*time.Millisecond)))
	case p < 95:
		return 100*time.Millisecond + time.Duration(w.rng.Int64N(int64(400*time.Millisecond)))
	default:
		return 1500*time.Millisecond + time.Duration(w.rng.Int64N(int64(1500*time.Millisecond)))
	}
}

// withLock runs section seq under advisorylock.WithLock.
func (w *chaosWorker) withLock(ctx context.Context, seq int) error {
	hold := w.hold()
	lostInSection := false
	_, err := advisorylock.WithLock(ctx, w.s, func(fctx context.Context) (struct{}, error) {
		l, _ := advisorylock.LockFromContext(fctx)
		w.record(recBegin, seq, w.s.Slot(l), chaosNow())
		timer := time.NewTimer(hold)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-fctx.Done():
		}
		lostInSection = fctx.Err() != nil && errors.Is(context.Cause(fctx), advisorylock.ErrLockLost)
		end := chaosNow()
		w.record(recEnd, seq, end, lostAt(lostInSection, end))
		return struct{}{}, nil
	})
	if errors.Is(err, advisorylock.ErrLockLost) && !lostInSection {
		w.record(recLate, seq, chaosNow())
	}
	return err
}

// lockUnlock runs section seq between Lock and Unlock, watching Done.
func (w *chaosWorker) lockUnlock(ctx context.Context, seq int) error {
	hold := w.hold()
	l, err := w.s.Lock(ctx)
	if err != nil {
		return err
	}
	w.record(recBegin, seq, w.s.Slot(l), chaosNow())
	timer := time.NewTimer(hold)
	select {
	case <-timer.C:
	case <-l.Done():
	case <-ctx.Done():
	}
	timer.Stop()
	lost := false
	select {
	case <-l.Done():
		lost = errors.Is(l.Err(), advisorylock.ErrLockLost)
	default:
	}
	end := chaosNow()
	w.record(recEnd, seq, end, lostAt(lost, end))
	uctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = l.Unlock(uctx)
	if errors.Is(err, advisorylock.ErrLockLost) && !lost {
		w.record(recLate, seq, chaosNow())
	}
	return err
}

func lostAt(lost bool, at int64) int64 {
	if lost {
		return at
	}
	return 0
}

// record appends one record to the log, in one write.
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
		// WithTimeout ran out: the slots were busy, or the network frozen.
		return "timeout"
	case errors.As(err, &pgErr):
		switch {
		case pgErr.Code == "57P01", pgErr.Code == "57P05", strings.HasPrefix(pgErr.Code, "08"):
			// Terminated, the lease, a connection exception.
			return "terminated"
		case pgErr.Code == "57P03":
			return "starting" // the server is shutting down or starting: a restart
		}
		return ""
	case errors.As(err, &connectErr):
		return "connect"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, pgconn.ErrConnClosed), errors.As(err, &netErr),
		errors.Is(err, pgwire.ErrClosed):
		return "connection"
	}
	return ""
}
