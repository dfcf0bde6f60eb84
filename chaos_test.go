package advisorylock_test

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// envChaos selects TestChaos's long form: "long" (three minutes, eight
// workers) or a duration such as "5m" (eight workers for that long). Unset,
// TestChaos runs its short form, about 25 seconds. A long form past about
// nine minutes needs go test's -timeout raised.
const envChaos = "ADVISORYLOCK_CHAOS"

// envChaosTrace, set to anything, makes TestChaos log the timeline around
// every overlap, not only around violations.
const envChaosTrace = "ADVISORYLOCK_CHAOS_TRACE"

// chaosPlan is the shape of one TestChaos run.
type chaosPlan struct {
	form      string
	workers   int
	duration  time.Duration // of the fault injection
	keepalive time.Duration // the workers' WithKeepalive
	timeout   time.Duration // the workers' WithTimeout
	gapMin    time.Duration // between two faults, at random
	gapMax    time.Duration
	freezeMin time.Duration // how long a proxy stays frozen, at random
	freezeMax time.Duration
	maxFrozen int           // proxies frozen at once, at most
	killEvery time.Duration // between two SIGKILLs, at least
	// progress is how long a worker process must have been up for it to be
	// required to have had a critical section.
	progress time.Duration
}

func chaosPlanFromEnv(t *testing.T) chaosPlan {
	t.Helper()
	p := chaosPlan{
		form:      "short",
		workers:   4,
		duration:  20 * time.Second,
		keepalive: 150 * time.Millisecond,
		timeout:   2 * time.Second,
		gapMin:    100 * time.Millisecond,
		gapMax:    500 * time.Millisecond,
		freezeMin: 100 * time.Millisecond,
		freezeMax: 2 * time.Second,
		maxFrozen: 2,
		killEvery: 3 * time.Second,
		progress:  8 * time.Second,
	}
	v := os.Getenv(envChaos)
	if v == "" {
		return p
	}
	p.form, p.workers, p.duration, p.maxFrozen, p.killEvery = "long", 8, 3*time.Minute, 3, 2*time.Second
	if v != "long" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("%s=%q: want \"long\" or a positive duration", envChaos, v)
		}
		p.duration = d
	}
	return p
}

// TestChaos checks mutual exclusion under faults. Worker processes (the test
// binary run again as TestChaosWorker) contend for one lock, each through a
// proxy of its own, and record their critical sections on a clock all
// processes share (chaosNow), while a fault injector at random
//
//   - terminates the backend of the lock's holder, or of a waiter
//     (pg_terminate_backend; the worker is found by application_name);
//   - freezes a worker's proxy (a silent network) for a while, then thaws or
//     cuts it;
//   - isolates the holder: freezes its proxy, then terminates its backend, so
//     the server releases the lock while the holder can hear of it only
//     through its keepalive probe (the widest window the checker allows);
//   - cuts a worker's connections (resets);
//   - SIGKILLs the holder's process and starts a replacement.
//
// Then chaosCheck proves that no two sections overlapped, except where one
// of the two holders was told its lock was lost (the earlier one, whose
// session was ended under it; or the later one, whose grant came through a
// frozen network after its session had already been terminated), ended its
// section by then, and the two overlapped no longer than the notification
// bound (chaosNotifyBound). It also checks that every worker made progress,
// that no worker's pool is left with a connection acquired or holding an
// advisory lock, and that afterwards no session holds or awaits the lock. The
// counts are logged, in a one-line summary starting "chaos:".
func TestChaos(t *testing.T) {
	// Serial: faults timed against worker processes, which need the CPUs to themselves.
	plan := chaosPlanFromEnv(t)
	srv := pgtest.Require(t)
	dsn := pgtest.Database(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	h := &chaosHarness{
		t:         t,
		plan:      plan,
		exe:       exe,
		serverDSN: srv.DSN(),
		dsn:       dsn,
		dir:       t.TempDir(),
		admin:     pgtest.NewPool(t, dsn),
		seed:      uint64(time.Now().UnixNano()),
		bell:      make(chan struct{}, 1),
		frozen:    make(map[int]chaosFreeze),
		counts:    make(map[string]int),
		settle:    make(map[string]int),
	}
	// The seed picks the faults and the workers' hold times; the timing of
	// processes and of the network is not reproducible anyway, so it is only
	// logged.
	h.rng = rand.New(rand.NewPCG(h.seed, 7))
	for range plan.workers {
		h.proxies = append(h.proxies, srv.Proxy(t))
	}
	// Registered after the proxies' cleanups, so it runs before them: no
	// worker outlives the test, whatever way it ends.
	t.Cleanup(h.killAll)

	h.createChaosWrites()
	for slot := range plan.workers {
		h.procs = append(h.procs, h.start(slot, 0))
	}
	// Faults start once every worker contends, so that each has the whole
	// run to make progress.
	for _, p := range h.procs {
		select {
		case <-p.out.ready:
		case <-p.exited:
			t.Fatalf("worker %s exited before it was ready (%v); its output:\n%s", p.name, p.waitErr, p.out)
		case <-time.After(time.Minute):
			t.Fatalf("worker %s not ready after a minute; its output:\n%s", p.name, p.out)
		}
	}
	began := time.Now()
	h.inject(t.Context(), began.Add(plan.duration))
	stopAt := chaosNow()
	h.stopAll()
	for _, proxy := range h.proxies {
		proxy.Close()
	}
	h.awaitQuiet()
	elapsed := time.Since(began)

	secs, late, fails, writes := h.readLogs()
	bound := chaosNotifyBound(plan.keepalive)
	overlaps := chaosCheck(secs, bound)
	h.report(secs, late, fails, overlaps, bound, elapsed)
	h.checkFencing(secs, writes)
	h.checkProgress(secs, stopAt)
}

// chaosHarness runs one TestChaos: the worker processes, their proxies and
// the fault injector. Only the test's goroutine uses it, apart from the
// fields each chaosProc documents.
type chaosHarness struct {
	t         *testing.T
	plan      chaosPlan
	exe       string
	serverDSN string
	dsn       string
	dir       string
	admin     *pgxpool.Pool // direct: for the injector and the final checks
	seed      uint64
	rng       *rand.Rand

	proxies []*pgtest.Proxy // one per slot
	procs   []*chaosProc    // the current worker process of each slot
	all     []*chaosProc    // every worker process, in start order
	bell    chan struct{}   // rung (never blocking) when a worker exits

	frozen   map[int]chaosFreeze // slot → how its freeze ends
	lastKill time.Time
	faults   []chaosFault
	counts   map[string]int // faults injected, by kind
	trace    []chaosEvent   // faults, and the workers' records, for diagnosis
	settle   map[string]int // who held pooled connections when a worker's loop ended
}

// chaosProc is one worker process.
type chaosProc struct {
	slot, inc int
	name      string // its application_name
	log       string // its record file
	cmd       *exec.Cmd
	stdin     io.WriteCloser
	out       *chaosOutput
	readyAt   int64 // when it was ready to contend, from its log

	killedAt int64 // set (by the injector, before the signal) when SIGKILLed

	exited  chan struct{} // closed once it has exited and been reaped
	waitErr error         // cmd.Wait's; read after exited is closed
}

// chaosFault is one injected fault, for the report.
type chaosFault struct {
	at   int64
	kind string
	slot int
}

// chaosFreeze is a frozen proxy's scheduled end.
type chaosFreeze struct {
	until time.Time
	cut   bool // end with a cut rather than a thaw
}

// start starts a worker process for slot, its incarnation inc.
func (h *chaosHarness) start(slot, inc int) *chaosProc {
	t := h.t
	t.Helper()
	p := &chaosProc{
		slot:   slot,
		inc:    inc,
		name:   fmt.Sprintf("chaos-%d.%d", slot, inc),
		out:    newChaosOutput(),
		exited: make(chan struct{}),
	}
	p.log = filepath.Join(h.dir, p.name+".log")
	cfg, err := json.Marshal(chaosWorkerConfig{
		Name:      p.name,
		DSN:       h.dsn,
		Proxy:     h.proxies[slot].Addr(),
		Log:       p.log,
		Keepalive: h.plan.keepalive,
		Timeout:   h.plan.timeout,
		Seed:      h.rng.Uint64(),
	})
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(h.exe, "-test.run=^TestChaosWorker$", "-test.count=1",
		"-test.timeout="+(h.plan.duration+5*time.Minute).String())
	// With ADVISORYLOCK_TEST_DSN the worker's TestMain uses this test's
	// server instead of starting one of its own.
	p.cmd.Env = append(os.Environ(), "ADVISORYLOCK_TEST_DSN="+h.serverDSN, envChaosWorker+"="+string(cfg))
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting worker %s: %v", p.name, err)
	}
	h.all = append(h.all, p)
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
		select {
		case h.bell <- struct{}{}:
		default:
		}
	}()
	return p
}

// inject injects faults at random until the time until, or until a worker
// exits unexpectedly.
func (h *chaosHarness) inject(ctx context.Context, until time.Time) {
	next := time.Now().Add(h.gap())
	for {
		now := time.Now()
		h.endFreezes(now)
		if !h.workersAlive() || !now.Before(until) {
			return
		}
		if !now.Before(next) {
			h.injectOne(ctx)
			next = time.Now().Add(h.gap())
		}
		wait := time.Until(next)
		wait = min(wait, time.Until(until))
		for _, f := range h.frozen {
			wait = min(wait, time.Until(f.until))
		}
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
		case <-h.bell:
		case <-ctx.Done():
			timer.Stop()
			return
		}
		timer.Stop()
	}
}

func (h *chaosHarness) gap() time.Duration {
	return h.plan.gapMin + durationN(h.rng, h.plan.gapMax-h.plan.gapMin)
}

// workersAlive reports whether every current worker still runs, and fails
// the test with the output of one that exited on its own.
func (h *chaosHarness) workersAlive() bool {
	for _, p := range h.procs {
		select {
		case <-p.exited:
			h.t.Errorf("worker %s exited during the run (%v); its output:\n%s", p.name, p.waitErr, p.out)
			return false
		default:
		}
	}
	return true
}

// chaosFaultKinds are the kinds of fault the injector picks from, with their
// weights.
var chaosFaultKinds = []struct {
	name   string
	weight int
}{
	{"terminate-holder", 3},
	{"terminate-waiter", 2},
	{"freeze", 2},
	{"isolate", 1},
	{"cut", 2},
	{"kill", 1},
}

// injectOne injects one fault: first of each kind not injected yet, so that
// even a short run covers them all, then of a kind picked at random by
// weight, among those that apply now.
func (h *chaosHarness) injectOne(ctx context.Context) {
	run := map[string]func(context.Context) bool{
		"terminate-holder": h.terminateHolder,
		"terminate-waiter": h.terminateWaiter,
		"freeze":           h.freeze,
		"isolate":          h.isolate,
		"cut":              h.cut,
		"kill":             h.killHolder,
	}
	for _, i := range h.rng.Perm(len(chaosFaultKinds)) {
		if k := chaosFaultKinds[i].name; h.counts[k] == 0 && run[k](ctx) {
			return
		}
	}
	total := 0
	for _, k := range chaosFaultKinds {
		total += k.weight
	}
	for range 4 {
		n := h.rng.IntN(total)
		for _, k := range chaosFaultKinds {
			if n -= k.weight; n < 0 {
				if run[k.name](ctx) {
					return
				}
				break
			}
		}
	}
}

// note records a fault injected at at (read just before the injection, so
// that the fault comes before its effects in the timeline).
func (h *chaosHarness) note(at int64, kind string, slot int, detail string) {
	h.faults = append(h.faults, chaosFault{at: at, kind: kind, slot: slot})
	h.counts[kind]++
	h.trace = append(h.trace, chaosEvent{at: at, what: fmt.Sprintf("FAULT %s on slot %d %s", kind, slot, detail)})
}

// chaosLockRow is a session holding or awaiting the lock.
type chaosLockRow struct {
	pid       int32
	granted   bool
	slot, inc int
}

// lockRows lists the workers' sessions in pg_locks.
func (h *chaosHarness) lockRows(ctx context.Context) []chaosLockRow {
	rows, err := h.admin.Query(ctx, `select l.pid, l.granted, coalesce(a.application_name, '')
		from pg_locks l left join pg_stat_activity a on a.pid = l.pid
		where l.locktype = 'advisory' and l.database = (select oid from pg_database where datname = current_database())`)
	if err != nil {
		h.t.Errorf("listing the lock's sessions: %v", err)
		return nil
	}
	var out []chaosLockRow
	var r chaosLockRow
	var app string
	_, err = pgx.ForEachRow(rows, []any{&r.pid, &r.granted, &app}, func() error {
		if _, err := fmt.Sscanf(app, "chaos-%d.%d", &r.slot, &r.inc); err == nil {
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		h.t.Errorf("listing the lock's sessions: %v", err)
	}
	return out
}

// pick returns a random row that is granted (or not), and false if none is.
func (h *chaosHarness) pick(rows []chaosLockRow, granted bool) (chaosLockRow, bool) {
	rows = slices.DeleteFunc(slices.Clone(rows), func(r chaosLockRow) bool { return r.granted != granted })
	if len(rows) == 0 {
		return chaosLockRow{}, false
	}
	return rows[h.rng.IntN(len(rows))], true
}

// terminateBackend ends a session with pg_terminate_backend, and reports
// whether it was still there to end.
func (h *chaosHarness) terminateBackend(ctx context.Context, pid int32) bool {
	var ok bool
	if err := h.admin.QueryRow(ctx, "select pg_terminate_backend($1)", pid).Scan(&ok); err != nil {
		h.t.Errorf("pg_terminate_backend(%d): %v", pid, err)
	}
	return ok
}

func (h *chaosHarness) terminateHolder(ctx context.Context) bool {
	r, ok := h.pick(h.lockRows(ctx), true)
	at := chaosNow()
	if !ok || !h.terminateBackend(ctx, r.pid) {
		return false
	}
	h.note(at, "terminate-holder", r.slot, fmt.Sprintf("(pid %d)", r.pid))
	return true
}

func (h *chaosHarness) terminateWaiter(ctx context.Context) bool {
	r, ok := h.pick(h.lockRows(ctx), false)
	at := chaosNow()
	if !ok || !h.terminateBackend(ctx, r.pid) {
		return false
	}
	h.note(at, "terminate-waiter", r.slot, fmt.Sprintf("(pid %d)", r.pid))
	return true
}

// targetSlot picks a slot to hit with a network fault: mostly the holder's,
// else any.
func (h *chaosHarness) targetSlot(ctx context.Context) int {
	if h.rng.IntN(10) < 7 {
		if r, ok := h.pick(h.lockRows(ctx), true); ok {
			return r.slot
		}
	}
	return h.rng.IntN(len(h.proxies))
}

// freezeSlot freezes slot's proxy and schedules the end of the freeze, a thaw
// or a cut, at least minimum from now.
func (h *chaosHarness) freezeSlot(slot int, minimum time.Duration) bool {
	if _, ok := h.frozen[slot]; ok || len(h.frozen) >= h.plan.maxFrozen {
		return false
	}
	d := max(minimum, h.plan.freezeMin+durationN(h.rng, h.plan.freezeMax-h.plan.freezeMin))
	h.proxies[slot].Freeze()
	h.frozen[slot] = chaosFreeze{until: time.Now().Add(d), cut: h.rng.IntN(10) < 4}
	return true
}

func (h *chaosHarness) freeze(ctx context.Context) bool {
	slot := h.targetSlot(ctx)
	at := chaosNow()
	if !h.freezeSlot(slot, 0) {
		return false
	}
	h.note(at, "freeze", slot, fmt.Sprintf("until +%v", time.Until(h.frozen[slot].until).Round(time.Millisecond)))
	return true
}

// isolate freezes the holder's network, then terminates its backend: the
// server releases the lock at once, while the holder can learn of it only from
// its keepalive probe. The freeze lasts long enough for the probe to notice.
func (h *chaosHarness) isolate(ctx context.Context) bool {
	r, ok := h.pick(h.lockRows(ctx), true)
	at := chaosNow()
	if !ok || !h.freezeSlot(r.slot, 3*h.plan.keepalive) {
		return false
	}
	h.note(at, "isolate", r.slot, fmt.Sprintf("(pid %d) until +%v", r.pid, time.Until(h.frozen[r.slot].until).Round(time.Millisecond)))
	h.terminateBackend(ctx, r.pid)
	return true
}

func (h *chaosHarness) cut(ctx context.Context) bool {
	slot := h.targetSlot(ctx)
	at := chaosNow()
	h.proxies[slot].CutAll()
	h.note(at, "cut", slot, "")
	return true
}

// endFreezes ends the freezes due by now: a cut (while still frozen, so what
// the freeze held back is dropped) then a thaw, or a thaw alone.
func (h *chaosHarness) endFreezes(now time.Time) {
	for slot, f := range h.frozen {
		if now.Before(f.until) {
			continue
		}
		end := "thaw"
		if f.cut {
			h.proxies[slot].CutAll()
			end = "cut"
		}
		h.counts["freeze-ended-by-"+end]++
		h.trace = append(h.trace, chaosEvent{at: chaosNow(), what: fmt.Sprintf("FAULT END freeze of slot %d ended by %s", slot, end)})
		h.proxies[slot].Thaw()
		delete(h.frozen, slot)
	}
}

// killHolder SIGKILLs the process whose session holds the lock and starts a
// replacement. The holder is read from pg_locks just before: no other fault
// is injected between that read and the kill, so the killed process holds the
// lock in the server when it dies.
func (h *chaosHarness) killHolder(ctx context.Context) bool {
	if time.Since(h.lastKill) < h.plan.killEvery {
		return false
	}
	r, ok := h.pick(h.lockRows(ctx), true)
	if !ok || r.inc != h.procs[r.slot].inc {
		return false // none, or a session of a worker already killed
	}
	p := h.procs[r.slot]
	p.killedAt = chaosNow()
	if err := p.cmd.Process.Kill(); err != nil {
		h.t.Errorf("SIGKILL to worker %s: %v", p.name, err)
		return false
	}
	h.lastKill = time.Now()
	h.note(p.killedAt, "kill", r.slot, fmt.Sprintf("(%s, pid %d)", p.name, r.pid))
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		h.t.Errorf("worker %s still running 10s after SIGKILL", p.name)
	}
	h.procs[r.slot] = h.start(r.slot, p.inc+1)
	return true
}

// stopAll ends the faults and stops every worker: it thaws the frozen
// proxies, closes the workers' standard input, and waits for them to exit.
// A worker that fails (an unexpected error, a pool not clean, a leak) fails
// the test with its output.
func (h *chaosHarness) stopAll() {
	for slot := range h.frozen {
		h.proxies[slot].Thaw()
		h.counts["freeze-ended-by-thaw"]++
		delete(h.frozen, slot)
	}
	for _, p := range h.procs {
		p.stdin.Close()
	}
	for _, p := range h.procs {
		select {
		case <-p.exited:
		case <-time.After(time.Minute):
			h.t.Errorf("worker %s still running a minute after it was told to stop; its output:\n%s", p.name, p.out)
			_ = p.cmd.Process.Kill()
			<-p.exited
			continue
		}
		if p.waitErr != nil {
			h.t.Errorf("worker %s failed (%v); its output:\n%s", p.name, p.waitErr, p.out)
		}
	}
}

// killAll is the cleanup that makes sure no worker outlives the test.
func (h *chaosHarness) killAll() {
	for _, p := range h.all {
		select {
		case <-p.exited:
			continue
		default:
		}
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// awaitQuiet waits until no worker session is left on the server and nothing
// holds or awaits an advisory lock in the test's database: every session
// ended with its worker process or its proxy.
func (h *chaosHarness) awaitQuiet() {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var sessions, locks int
	for {
		err := h.admin.QueryRow(ctx, `select
			(select count(*) from pg_stat_activity where datname = current_database() and application_name like 'chaos-%'),
			(select count(*) from pg_locks where locktype = 'advisory'
				and database = (select oid from pg_database where datname = current_database()))`).Scan(&sessions, &locks)
		if err != nil {
			h.t.Errorf("checking the sessions left: %v", err)
			return
		}
		if sessions == 0 && locks == 0 {
			return
		}
		select {
		case <-ctx.Done():
			h.t.Errorf("after the run: %d worker sessions, %d advisory locks held or awaited; want 0 and 0", sessions, locks)
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// chaosLate is a section whose release reported the loss after it ended.
type chaosLate struct {
	worker string
	seq    int
}

// readLogs reads every worker's records: the sections, the releases that
// reported a loss, the failed attempts by class, and the fenced writes.
func (h *chaosHarness) readLogs() (secs []chaosSection, late []chaosLate, fails map[string]int, writes []chaosWrite) {
	fails = make(map[string]int)
	for _, p := range h.all {
		s, l, trace, err := readChaosLog(p, fails, h.settle, &writes)
		if err != nil {
			h.t.Errorf("worker %s's records: %v", p.name, err)
		}
		secs = append(secs, s...)
		late = append(late, l...)
		h.trace = append(h.trace, trace...)
	}
	return secs, late, fails, writes
}

func readChaosLog(p *chaosProc, fails, settle map[string]int, writes *[]chaosWrite) (secs []chaosSection, late []chaosLate, trace []chaosEvent, err error) {
	data, err := os.ReadFile(p.log)
	if err != nil {
		return nil, nil, nil, err
	}
	open := make(map[int]int) // seq → index in secs, while not ended
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		bad := func() error { return fmt.Errorf("line %d: %q", line, sc.Text()) }
		if len(f) == 0 {
			return nil, nil, nil, bad()
		}
		if f[0] == recFail && len(f) >= 3 {
			fails[f[1]]++
			if at, err := strconv.ParseInt(f[2], 10, 64); err == nil {
				trace = append(trace, chaosEvent{at: at, what: p.name + " failed: " + strings.Join(f[3:], " ")})
			}
			continue
		}
		if f[0] == recQuery && len(f) >= 4 {
			at, err1 := strconv.ParseInt(f[1], 10, 64)
			took, err2 := strconv.ParseInt(f[3], 10, 64)
			if err1 != nil || err2 != nil {
				return nil, nil, nil, bad()
			}
			trace = append(trace, chaosEvent{at: at - took, what: fmt.Sprintf("%s pid %s: %s (took %v)",
				p.name, f[2], strings.Join(f[4:], " "), time.Duration(took))})
			continue
		}
		if f[0] == recWrite {
			w, err := parseChaosWrite(p.name, f)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("%w: %w", bad(), err)
			}
			*writes = append(*writes, w)
			trace = append(trace, chaosEvent{at: w.returned, what: fmt.Sprintf("%s#%d's write with token %d: %s (took %v)",
				p.name, w.seq, w.token, w.outcome, time.Duration(w.returned-w.called))})
			continue
		}
		if f[0] == recSettle && len(f) == 2 {
			settle[f[1]]++
			continue
		}
		if f[0] == recReady && len(f) == 2 {
			if p.readyAt, err = strconv.ParseInt(f[1], 10, 64); err != nil {
				return nil, nil, nil, bad()
			}
			continue
		}
		n := make([]int64, len(f)-1)
		for i := range n {
			if n[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
				return nil, nil, nil, bad()
			}
		}
		switch {
		case f[0] == recBegin && len(n) == 4:
			open[int(n[0])] = len(secs)
			secs = append(secs, chaosSection{worker: p.name, slot: p.slot, seq: int(n[0]), start: n[1], token: n[2], called: n[3]})
		case f[0] == recEnd && len(n) == 3:
			i, ok := open[int(n[0])]
			if !ok {
				return nil, nil, nil, fmt.Errorf("%w: a section that did not begin", bad())
			}
			delete(open, int(n[0]))
			secs[i].end, secs[i].lostAt = n[1], n[2]
		case f[0] == recLate && len(n) == 2:
			for i := range secs {
				if secs[i].seq == int(n[0]) && secs[i].lostAt == 0 {
					secs[i].lostAt = n[1]
					late = append(late, chaosLate{worker: p.name, seq: int(n[0])})
				}
			}
		default:
			return nil, nil, nil, bad()
		}
	}
	for seq, i := range open {
		if p.killedAt == 0 {
			return nil, nil, nil, fmt.Errorf("section %d never ended, and the worker was not killed", seq)
		}
		secs[i].end, secs[i].killed = max(secs[i].start, p.killedAt), true
	}
	for _, s := range secs {
		trace = append(trace, chaosEvent{at: s.start, what: fmt.Sprintf("%v begins, token %d", s, s.token)})
		ended := "ends"
		switch {
		case s.killed:
			ended = "ends: killed"
		case s.lostAt == s.end:
			ended = "ends: told the lock was lost"
		}
		trace = append(trace, chaosEvent{at: s.end, what: fmt.Sprintf("%v %s", s, ended)})
		if s.lostAt != 0 && s.lostAt != s.end {
			trace = append(trace, chaosEvent{at: s.lostAt, what: fmt.Sprintf("%v told at release that the lock was lost", s)})
		}
	}
	return secs, late, trace, nil
}

// chaosEvent is one line of the timeline logged around a violation.
type chaosEvent struct {
	at   int64
	what string
}

// report logs the run's counts and fails the test for every violation.
func (h *chaosHarness) report(secs []chaosSection, late []chaosLate, fails map[string]int,
	overlaps []chaosOverlap, bound, elapsed time.Duration) {
	t := h.t
	lost, killed := 0, 0
	for _, s := range secs {
		if s.lostAt != 0 {
			lost++
		}
		if s.killed {
			killed++
		}
	}
	violations := 0
	var maxKept time.Duration
	byCause := make(map[string]int)
	for _, o := range overlaps {
		cause := h.causeOf(o)
		byCause[o.whoTold()+" after "+h.causeKind(o)]++
		if o.problem != "" {
			violations++
			t.Errorf("%v (last fault: %s)\n%s", o, cause, h.timeline(o))
			continue
		}
		maxKept = max(maxKept, o.kept)
		if os.Getenv(envChaosTrace) != "" {
			t.Logf("overlap %v (after %s)\n%s", o, cause, h.timeline(o))
		} else {
			t.Logf("overlap %v (after %s)", o, cause)
		}
	}
	faults := 0
	for _, k := range chaosFaultKinds {
		faults += h.counts[k.name]
		if h.counts[k.name] == 0 {
			t.Errorf("no %s fault was injected", k.name)
		}
	}
	t.Logf("chaos: form=%s seed=%d workers=%d processes=%d ran=%v keepalive=%v sections=%d"+
		" faults=%d terminate-holder=%d terminate-waiter=%d freeze=%d (ended by thaw=%d, by cut=%d) isolate=%d cut=%d kill=%d"+
		" losses-reported=%d (in section=%d, at release=%d) killed-in-section=%d"+
		" failed-attempts=%s overlaps=%d (%s) max-overlap=%v bound=%v violations=%d pools-unsettled-at-stop=%s",
		h.plan.form, h.seed, h.plan.workers, len(h.all), elapsed.Round(time.Millisecond), h.plan.keepalive, len(secs),
		faults, h.counts["terminate-holder"], h.counts["terminate-waiter"], h.counts["freeze"],
		h.counts["freeze-ended-by-thaw"], h.counts["freeze-ended-by-cut"], h.counts["isolate"], h.counts["cut"], h.counts["kill"],
		lost, lost-len(late), len(late), killed,
		chaosCounts(fails), len(overlaps), chaosCounts(byCause), maxKept.Round(time.Millisecond), bound, violations,
		chaosCounts(h.settle))
	per := make(map[string]int)
	for _, s := range secs {
		per[fmt.Sprintf("slot%d", s.slot)]++
	}
	t.Logf("chaos: sections per worker slot: %s", chaosCounts(per))
}

// timeline renders the events around an overlap, for its diagnosis.
func (h *chaosHarness) timeline(o chaosOverlap) string {
	from, to := o.earlier.start-int64(time.Second), max(o.earlier.end, o.later.end)+int64(100*time.Millisecond)
	events := slices.DeleteFunc(slices.Clone(h.trace), func(e chaosEvent) bool { return e.at < from || e.at > to })
	slices.SortStableFunc(events, func(a, b chaosEvent) int { return cmp.Compare(a.at, b.at) })
	var b strings.Builder
	for _, e := range events {
		fmt.Fprintf(&b, "\t%+12.3fms %s\n", float64(e.at-o.later.start)/1e6, e.what)
	}
	return b.String()
}

// lastFault returns the last fault injected, before the overlap began, on
// the slot of the section that explains it (else of the earlier one).
func (h *chaosHarness) lastFault(o chaosOverlap) (chaosFault, bool) {
	s := o.earlier
	if o.told != nil {
		s = *o.told
	}
	for _, f := range slices.Backward(h.faults) {
		if f.slot == s.slot && f.at <= o.later.start {
			return f, true
		}
	}
	return chaosFault{}, false
}

// causeOf describes lastFault's fault, for the log.
func (h *chaosHarness) causeOf(o chaosOverlap) string {
	f, ok := h.lastFault(o)
	if !ok {
		return "no fault on its worker slot"
	}
	return fmt.Sprintf("%s on slot %d %v before", f.kind, f.slot, time.Duration(o.later.start-f.at).Round(time.Millisecond))
}

// causeKind names lastFault's kind, for the counts.
func (h *chaosHarness) causeKind(o chaosOverlap) string {
	if f, ok := h.lastFault(o); ok {
		return f.kind
	}
	return "no-fault"
}

// checkProgress fails the test unless every slot had a critical section and
// every worker process up for plan.progress before the end had one too.
func (h *chaosHarness) checkProgress(secs []chaosSection, stopAt int64) {
	had := make(map[string]int)
	slots := make(map[int]int)
	for _, s := range secs {
		had[s.worker]++
		slots[s.slot]++
	}
	for slot := range h.plan.workers {
		if slots[slot] == 0 {
			h.t.Errorf("no worker process of slot %d had a critical section", slot)
		}
	}
	for _, p := range h.all {
		end := stopAt
		if p.killedAt != 0 {
			end = p.killedAt
		}
		if p.readyAt != 0 && time.Duration(end-p.readyAt) >= h.plan.progress && had[p.name] == 0 {
			h.t.Errorf("worker %s ran %v without a critical section", p.name, time.Duration(end-p.readyAt).Round(time.Millisecond))
		}
	}
}

// chaosCounts formats counts by name, sorted: "a=1,b=2".
func chaosCounts(m map[string]int) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%d", k, m[k])
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

// chaosOutput collects a worker's standard output and error, and closes
// ready when the worker prints chaosReady.
type chaosOutput struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	ready chan struct{}
	seen  bool
}

func newChaosOutput() *chaosOutput { return &chaosOutput{ready: make(chan struct{})} }

func (o *chaosOutput) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf.Write(b)
	if !o.seen && bytes.Contains(o.buf.Bytes(), []byte(chaosReady+"\n")) {
		o.seen = true
		close(o.ready)
	}
	return len(b), nil
}

func (o *chaosOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}
