package semaphore_test

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
	"github.com/advisorylock/advisorylock/semaphore"
)

// envChaos selects TestChaos's long form: "long" (three minutes, eight
// workers) or a duration such as "5m". Unset, TestChaos runs its short form,
// about 30 seconds. A long form past about nine minutes needs go test's
// -timeout raised.
const envChaos = "ADVISORYLOCK_CHAOS"

// chaosPlan is the shape of one TestChaos run.
type chaosPlan struct {
	form      string
	workers   int
	slots     int
	duration  time.Duration // of the fault injection
	keepalive time.Duration // the slots' WithKeepalive
	timeout   time.Duration // WithTimeout
	recheck   time.Duration // WithRecheck
	gapMin    time.Duration // between two faults, at random
	gapMax    time.Duration
	freezeMax time.Duration // how long a proxy stays frozen, at most
	killEvery time.Duration // between two SIGKILLs, at least
	restarts  int           // server restarts, spread over the run
	progress  time.Duration // a worker up this long must have had a section
}

func chaosPlanFromEnv(t *testing.T) chaosPlan {
	t.Helper()
	p := chaosPlan{
		form: "short", workers: 5, slots: 2, duration: 20 * time.Second,
		keepalive: 150 * time.Millisecond, timeout: 2 * time.Second, recheck: 200 * time.Millisecond,
		gapMin: 100 * time.Millisecond, gapMax: 500 * time.Millisecond, freezeMax: 2 * time.Second,
		killEvery: 3 * time.Second, restarts: 1, progress: 10 * time.Second,
	}
	v := os.Getenv(envChaos)
	if v == "" {
		return p
	}
	p.form, p.workers, p.slots, p.duration, p.killEvery, p.restarts = "long", 8, 3, 3*time.Minute, 2*time.Second, 3
	if v != "long" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("%s=%q: want \"long\" or a positive duration", envChaos, v)
		}
		p.duration = d
	}
	return p
}

// TestChaos checks that a semaphore of N slots never has more than N holders
// under faults. Worker processes (the test binary run again as
// TestChaosWorker) contend for its slots, each through a proxy of its own, on
// a server of the test's own, and record their critical sections, with the
// slot each held, on a clock all processes share, while a fault injector at
// random terminates the backend of a slot's holder or of a waiter (in the
// queue, heading it, or waiting at its head on a slot), freezes a worker's
// proxy and then thaws or cuts it, isolates a holder (freezes its network,
// then terminates its backend: the widest window), cuts a worker's
// connections, SIGKILLs a holder's process (and starts a replacement), and
// restarts the server.
//
// The checker then proves, slot by slot, that no two sections on one slot
// overlapped unless one of them was told its slot was lost and had ended by
// then, within the notification bound (the rule of the package advisorylock's
// chaos test: a slot is a Mutex); more than N sections at once imply two on
// one slot, so each moment with more than N is one of those overlaps, and
// must be explained too. It checks that every worker made progress, that no
// worker left a pooled connection acquired or holding an advisory lock, and
// that afterwards nothing holds or awaits a lock. The counts are logged in a
// one-line summary starting "semaphore chaos:".
func TestChaos(t *testing.T) {
	// Serial: faults timed against worker processes, which need the CPUs to themselves.
	plan := chaosPlanFromEnv(t)
	srv := pgtest.StartPrivate(t)
	dsn := srv.CreateDatabase(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	h := &chaosHarness{
		t: t, plan: plan, exe: exe, srv: srv, dsn: dsn, dir: t.TempDir(),
		admin: pgtest.NewPool(t, dsn), seed: uint64(time.Now().UnixNano()),
		bell: make(chan struct{}, 1), frozen: make(map[int]time.Time), counts: make(map[string]int),
	}
	h.rng = rand.New(rand.NewPCG(h.seed, 11))
	for range plan.workers {
		h.proxies = append(h.proxies, srv.Proxy(t))
	}
	t.Cleanup(h.killAll) // registered after the proxies': runs before them
	for slot := range plan.workers {
		h.procs = append(h.procs, h.start(slot, 0))
	}
	for _, p := range h.procs {
		select {
		case <-p.out.ready:
		case <-p.exited:
			t.Fatalf("worker %s exited before it was ready (%v):\n%s", p.name, p.waitErr, p.out)
		case <-time.After(time.Minute):
			t.Fatalf("worker %s not ready after a minute:\n%s", p.name, p.out)
		}
	}
	began := time.Now()
	h.inject(t.Context(), began.Add(plan.duration))
	stopAt := chaosNow()
	h.stopAll()
	for _, p := range h.proxies {
		p.Close()
	}
	h.awaitQuiet()
	secs, fails := h.readLogs()
	bound := 2*plan.keepalive + chaosWatchDelay + chaosNotifyMargin
	overlaps, above := chaosCheck(secs, plan.slots, bound)
	h.report(secs, fails, overlaps, above, bound, time.Since(began))
	h.checkProgress(secs, stopAt)
}

// chaosWatchDelay: a held slot's connection is watched from 20ms after the
// grant, plus up to one 5ms tick (the root package's watch.go).
const chaosWatchDelay = 25 * time.Millisecond

// chaosNotifyMargin is added to the notification bound for scheduling on a
// busy machine: two cores, the race detector, several worker processes.
const chaosNotifyMargin = time.Second

// chaosHarness runs one TestChaos; only the test's goroutine uses it.
type chaosHarness struct {
	t     *testing.T
	plan  chaosPlan
	exe   string
	srv   *pgtest.Server
	dsn   string
	dir   string
	admin *pgxpool.Pool
	seed  uint64
	rng   *rand.Rand

	proxies []*pgtest.Proxy
	procs   []*chaosProc // the current worker process of each slot
	all     []*chaosProc
	bell    chan struct{} // rung when a worker exits

	frozen   map[int]time.Time // worker slot → when its freeze ends
	cutAfter map[int]bool      // worker slot → its freeze ends with a cut
	lastKill time.Time
	restarts []time.Time // when each restart is due
	faults   []chaosFault
	counts   map[string]int
}

// chaosProc is one worker process.
type chaosProc struct {
	slot, inc int
	name      string
	log       string
	cmd       *exec.Cmd
	stdin     io.WriteCloser
	out       *chaosOutput
	readyAt   int64
	killedAt  int64
	exited    chan struct{}
	waitErr   error
}

type chaosFault struct {
	at   int64
	kind string
	slot int // the worker slot hit; -1 for the server
}

func (h *chaosHarness) start(slot, inc int) *chaosProc {
	t := h.t
	p := &chaosProc{slot: slot, inc: inc, name: fmt.Sprintf("semchaos-%d.%d", slot, inc), out: newChaosOutput(), exited: make(chan struct{})}
	p.log = filepath.Join(h.dir, p.name+".log")
	cfg, err := json.Marshal(chaosWorkerConfig{
		Name: p.name, DSN: h.dsn, Proxy: h.proxies[slot].Addr(), Log: p.log, Slots: h.plan.slots,
		Keepalive: h.plan.keepalive, Timeout: h.plan.timeout, Recheck: h.plan.recheck, Seed: h.rng.Uint64(),
	})
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(h.exe, "-test.run=^TestChaosWorker$", "-test.count=1", "-test.timeout="+(h.plan.duration+5*time.Minute).String())
	// The worker's TestMain uses the test's server (ADVISORYLOCK_TEST_DSN)
	// rather than starting one; its process must not sleep a second at exit
	// under the race detector.
	p.cmd.Env = append(os.Environ(), "ADVISORYLOCK_TEST_DSN="+h.srv.DSN(), envChaosWorker+"="+string(cfg), "GORACE=atexit_sleep_ms=0")
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
// exits unexpectedly. The restarts are spread evenly over the run.
func (h *chaosHarness) inject(ctx context.Context, until time.Time) {
	for i := range h.plan.restarts {
		h.restarts = append(h.restarts, time.Now().Add(h.plan.duration*time.Duration(i+1)/time.Duration(h.plan.restarts+1)))
	}
	h.cutAfter = make(map[int]bool)
	next := time.Now().Add(h.gap())
	for {
		now := time.Now()
		h.endFreezes(now)
		if !h.workersAlive() || !now.Before(until) {
			return
		}
		if len(h.restarts) > 0 && !now.Before(h.restarts[0]) {
			h.restarts = h.restarts[1:]
			h.restart(ctx)
			next = time.Now().Add(h.gap())
			continue
		}
		if !now.Before(next) {
			h.injectOne(ctx)
			next = time.Now().Add(h.gap())
		}
		wait := min(time.Until(next), time.Until(until))
		if len(h.restarts) > 0 {
			wait = min(wait, time.Until(h.restarts[0]))
		}
		for _, end := range h.frozen {
			wait = min(wait, time.Until(end))
		}
		timer := time.NewTimer(max(wait, 0))
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
	return h.plan.gapMin + time.Duration(h.rng.Int64N(int64(h.plan.gapMax-h.plan.gapMin)))
}

func (h *chaosHarness) workersAlive() bool {
	for _, p := range h.procs {
		select {
		case <-p.exited:
			h.t.Errorf("worker %s exited during the run (%v):\n%s", p.name, p.waitErr, p.out)
			return false
		default:
		}
	}
	return true
}

// chaosKinds are the faults the injector picks from, with their weights.
var chaosKinds = []struct {
	name   string
	weight int
}{
	{"terminate-holder", 3}, {"terminate-waiter", 2}, {"freeze", 2}, {"isolate", 1}, {"cut", 2}, {"kill", 1},
}

// injectOne injects a fault of each kind not injected yet first, then of a
// kind picked by weight among those that apply now.
func (h *chaosHarness) injectOne(ctx context.Context) {
	run := map[string]func(context.Context) bool{
		"terminate-holder": h.terminateHolder, "terminate-waiter": h.terminateWaiter, "freeze": h.freeze,
		"isolate": h.isolate, "cut": h.cut, "kill": h.killHolder,
	}
	for _, i := range h.rng.Perm(len(chaosKinds)) {
		if k := chaosKinds[i].name; h.counts[k] == 0 && run[k](ctx) {
			return
		}
	}
	total := 0
	for _, k := range chaosKinds {
		total += k.weight
	}
	for range 4 {
		n := h.rng.IntN(total)
		for _, k := range chaosKinds {
			if n -= k.weight; n < 0 {
				if run[k.name](ctx) {
					return
				}
				break
			}
		}
	}
}

func (h *chaosHarness) note(at int64, kind string, slot int) {
	h.faults = append(h.faults, chaosFault{at: at, kind: kind, slot: slot})
	h.counts[kind]++
}

// chaosRow is a worker's session in pg_locks: holding a slot, heading the
// queue, or waiting.
type chaosRow struct {
	pid       int32
	holder    bool // holds a slot
	slot, inc int
}

// rows lists the workers' sessions that hold or await the semaphore's keys.
func (h *chaosHarness) rows(ctx context.Context) []chaosRow {
	q, _ := semaphore.QueueKey(chaosName).Int64()
	rows, err := h.admin.Query(ctx, `select l.pid, l.granted and ((l.classid::int8 << 32) | l.objid::int8) <> $1, coalesce(a.application_name, '')
		from pg_locks l left join pg_stat_activity a on a.pid = l.pid
		where l.locktype = 'advisory' and l.database = (select oid from pg_database where datname = current_database())`, q)
	if err != nil {
		return nil // the server may be restarting
	}
	var out []chaosRow
	var r chaosRow
	var app string
	_, err = pgx.ForEachRow(rows, []any{&r.pid, &r.holder, &app}, func() error {
		if _, err := fmt.Sscanf(app, "semchaos-%d.%d", &r.slot, &r.inc); err == nil {
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil
	}
	return out
}

func (h *chaosHarness) pick(rows []chaosRow, holder bool) (chaosRow, bool) {
	rows = slices.DeleteFunc(slices.Clone(rows), func(r chaosRow) bool { return r.holder != holder })
	if len(rows) == 0 {
		return chaosRow{}, false
	}
	return rows[h.rng.IntN(len(rows))], true
}

func (h *chaosHarness) terminate(ctx context.Context, pid int32) bool {
	var ok bool
	err := h.admin.QueryRow(ctx, "select pg_terminate_backend($1)", pid).Scan(&ok)
	return err == nil && ok
}

func (h *chaosHarness) terminateHolder(ctx context.Context) bool {
	r, ok := h.pick(h.rows(ctx), true)
	at := chaosNow()
	if !ok || !h.terminate(ctx, r.pid) {
		return false
	}
	h.note(at, "terminate-holder", r.slot)
	return true
}

func (h *chaosHarness) terminateWaiter(ctx context.Context) bool {
	r, ok := h.pick(h.rows(ctx), false)
	at := chaosNow()
	if !ok || !h.terminate(ctx, r.pid) {
		return false
	}
	h.note(at, "terminate-waiter", r.slot)
	return true
}

// freezeSlot freezes a worker's proxy until at least minimum from now.
func (h *chaosHarness) freezeSlot(slot int, minimum time.Duration) bool {
	if _, ok := h.frozen[slot]; ok || len(h.frozen) >= 2 {
		return false
	}
	d := max(minimum, 100*time.Millisecond+time.Duration(h.rng.Int64N(int64(h.plan.freezeMax))))
	h.proxies[slot].Freeze()
	h.frozen[slot] = time.Now().Add(d)
	h.cutAfter[slot] = h.rng.IntN(10) < 4
	return true
}

func (h *chaosHarness) targetSlot(ctx context.Context) int {
	if h.rng.IntN(10) < 7 {
		if r, ok := h.pick(h.rows(ctx), true); ok {
			return r.slot
		}
	}
	return h.rng.IntN(len(h.proxies))
}

func (h *chaosHarness) freeze(ctx context.Context) bool {
	slot := h.targetSlot(ctx)
	at := chaosNow()
	if !h.freezeSlot(slot, 0) {
		return false
	}
	h.note(at, "freeze", slot)
	return true
}

// isolate freezes a holder's network, then terminates its backend.
func (h *chaosHarness) isolate(ctx context.Context) bool {
	r, ok := h.pick(h.rows(ctx), true)
	at := chaosNow()
	if !ok || !h.freezeSlot(r.slot, 3*h.plan.keepalive) {
		return false
	}
	h.note(at, "isolate", r.slot)
	h.terminate(ctx, r.pid)
	return true
}

func (h *chaosHarness) cut(ctx context.Context) bool {
	slot := h.targetSlot(ctx)
	at := chaosNow()
	h.proxies[slot].CutAll()
	h.note(at, "cut", slot)
	return true
}

func (h *chaosHarness) endFreezes(now time.Time) {
	for slot, end := range h.frozen {
		if now.Before(end) {
			continue
		}
		if h.cutAfter[slot] {
			h.proxies[slot].CutAll()
			h.counts["freeze-ended-by-cut"]++
		} else {
			h.counts["freeze-ended-by-thaw"]++
		}
		h.proxies[slot].Thaw()
		delete(h.frozen, slot)
	}
}

// killHolder SIGKILLs the process whose session holds a slot, read from
// pg_locks just before, and starts a replacement.
func (h *chaosHarness) killHolder(ctx context.Context) bool {
	if time.Since(h.lastKill) < h.plan.killEvery {
		return false
	}
	r, ok := h.pick(h.rows(ctx), true)
	if !ok || r.inc != h.procs[r.slot].inc {
		return false
	}
	p := h.procs[r.slot]
	p.killedAt = chaosNow()
	if err := p.cmd.Process.Kill(); err != nil {
		h.t.Errorf("SIGKILL to %s: %v", p.name, err)
		return false
	}
	h.lastKill = time.Now()
	h.note(p.killedAt, "kill", r.slot)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		h.t.Errorf("worker %s still running 10s after SIGKILL", p.name)
	}
	h.procs[r.slot] = h.start(r.slot, p.inc+1)
	return true
}

// restart restarts the server (a fast shutdown ends every session).
func (h *chaosHarness) restart(ctx context.Context) {
	at := chaosNow()
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := h.srv.Restart(rctx); err != nil {
		h.t.Errorf("restarting the server: %v", err)
		return
	}
	h.note(at, "restart", -1)
}

// stopAll thaws the proxies, closes the workers' standard input, and waits
// for them to exit; a worker that fails fails the test with its output.
func (h *chaosHarness) stopAll() {
	for slot := range h.frozen {
		h.proxies[slot].Thaw()
		delete(h.frozen, slot)
	}
	for _, p := range h.procs {
		p.stdin.Close()
	}
	for _, p := range h.procs {
		select {
		case <-p.exited:
		case <-time.After(time.Minute):
			h.t.Errorf("worker %s still running a minute after it was told to stop:\n%s", p.name, p.out)
			_ = p.cmd.Process.Kill()
			<-p.exited
			continue
		}
		if p.waitErr != nil {
			h.t.Errorf("worker %s failed (%v):\n%s", p.name, p.waitErr, p.out)
		}
	}
}

func (h *chaosHarness) killAll() {
	for _, p := range h.all {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	}
}

// awaitQuiet waits until no worker session is left and nothing holds or
// awaits an advisory lock in the test's database.
func (h *chaosHarness) awaitQuiet() {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		var sessions, locks int
		err := h.admin.QueryRow(ctx, `select
			(select count(*) from pg_stat_activity where datname = current_database() and application_name like 'semchaos-%'),
			(select count(*) from pg_locks where locktype = 'advisory'
				and database = (select oid from pg_database where datname = current_database()))`).Scan(&sessions, &locks)
		if err == nil && sessions == 0 && locks == 0 {
			return
		}
		select {
		case <-ctx.Done():
			h.t.Errorf("after the run: %d worker sessions, %d advisory locks (%v); want none", sessions, locks, err)
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// readLogs reads every worker's records.
func (h *chaosHarness) readLogs() (secs []chaosSection, fails map[string]int) {
	fails = make(map[string]int)
	for _, p := range h.all {
		s, err := readChaosLog(p, fails)
		if err != nil {
			h.t.Errorf("worker %s's records: %v", p.name, err)
		}
		secs = append(secs, s...)
	}
	return secs, fails
}

func readChaosLog(p *chaosProc, fails map[string]int) ([]chaosSection, error) {
	data, err := os.ReadFile(p.log)
	if err != nil {
		return nil, err
	}
	var secs []chaosSection
	open := make(map[int]int) // seq → index in secs, while not ended
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		bad := fmt.Errorf("line %d: %q", line, sc.Text())
		if len(f) == 0 {
			return nil, bad
		}
		if f[0] == recFail && len(f) >= 3 {
			fails[f[1]]++
			continue
		}
		n := make([]int64, len(f)-1)
		for i := range n {
			if n[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
				return nil, bad
			}
		}
		switch {
		case f[0] == recReady && len(n) == 1:
			p.readyAt = n[0]
		case f[0] == recBegin && len(n) == 3:
			open[int(n[0])] = len(secs)
			secs = append(secs, chaosSection{worker: p.name, wslot: p.slot, seq: int(n[0]), slot: int(n[1]), start: n[2]})
		case f[0] == recEnd && len(n) == 3:
			i, ok := open[int(n[0])]
			if !ok {
				return nil, fmt.Errorf("%w: a section that did not begin", bad)
			}
			delete(open, int(n[0]))
			secs[i].end, secs[i].lostAt = n[1], n[2]
		case f[0] == recLate && len(n) == 2:
			for i := range secs {
				if secs[i].seq == int(n[0]) && secs[i].lostAt == 0 {
					secs[i].lostAt = n[1]
				}
			}
		default:
			return nil, bad
		}
	}
	for seq, i := range open {
		if p.killedAt == 0 {
			return nil, fmt.Errorf("section %d never ended, and the worker was not killed", seq)
		}
		secs[i].end, secs[i].killed = max(secs[i].start, p.killedAt), true
	}
	return secs, nil
}

// report logs the counts and fails the test for every violation.
func (h *chaosHarness) report(secs []chaosSection, fails map[string]int, overlaps []chaosOverlap, above []chaosAbove, bound, elapsed time.Duration) {
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
	violations, unexplained := 0, 0
	var maxKept time.Duration
	for _, o := range overlaps {
		if o.problem != "" {
			violations++
			t.Errorf("%v", o)
			continue
		}
		maxKept = max(maxKept, o.kept)
		t.Logf("overlap %v", o)
	}
	most := h.plan.slots
	for _, a := range above {
		most = max(most, a.count)
		if !a.explained {
			unexplained++
			t.Errorf("%d sections at once at %d, above the %d slots, not explained by a loss", a.count, a.at, h.plan.slots)
		}
	}
	kinds := []string{"restart"}
	for _, k := range chaosKinds {
		kinds = append(kinds, k.name)
	}
	for _, k := range kinds {
		if h.counts[k] == 0 && (k != "restart" || h.plan.restarts > 0) {
			t.Errorf("no %s fault was injected", k)
		}
	}
	faults := 0
	for _, n := range h.counts {
		faults += n
	}
	faults -= h.counts["freeze-ended-by-cut"] + h.counts["freeze-ended-by-thaw"]
	t.Logf("semaphore chaos: form=%s seed=%d workers=%d slots=%d processes=%d ran=%v sections=%d faults=%d (%s)"+
		" losses-reported=%d killed-in-section=%d failed-attempts=%s"+
		" moments-above-%d-slots=%d (unexplained %d, most at once %d) slot-overlaps=%d (max %v) bound=%v violations=%d",
		h.plan.form, h.seed, h.plan.workers, h.plan.slots, len(h.all), elapsed.Round(time.Millisecond), len(secs), faults,
		chaosCounts(h.counts), lost, killed, chaosCounts(fails),
		h.plan.slots, len(above), unexplained, most, len(overlaps), maxKept.Round(time.Millisecond), bound, violations)
	per := make(map[string]int)
	for _, s := range secs {
		per[fmt.Sprintf("slot%d", s.slot)]++
	}
	t.Logf("semaphore chaos: sections per semaphore slot: %s", chaosCounts(per))
}

// checkProgress fails the test unless every worker slot had a section and
// every worker process up long enough had one too.
func (h *chaosHarness) checkProgress(secs []chaosSection, stopAt int64) {
	had := make(map[string]int)
	wslots := make(map[int]int)
	for _, s := range secs {
		had[s.worker]++
		wslots[s.wslot]++
	}
	for w := range h.plan.workers {
		if wslots[w] == 0 {
			h.t.Errorf("no worker process of worker slot %d had a critical section", w)
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

func chaosCounts(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ",")
}

// chaosOutput collects a worker's output and closes ready when the worker
// prints chaosReady.
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

// chaosSection is one critical section as a worker recorded it.
type chaosSection struct {
	worker string // semchaos-WSLOT.INCARNATION
	wslot  int    // the worker slot (its proxy)
	seq    int
	slot   int   // the semaphore's slot held
	start  int64 // read after Lock returned
	end    int64 // read before the release, or the kill
	lostAt int64 // when it was told the slot was lost; 0 if never
	killed bool
}

func (s chaosSection) String() string { return fmt.Sprintf("%s#%d(slot %d)", s.worker, s.seq, s.slot) }

// told reports whether the section was told its slot was lost, and ended by
// then (a little slack: the record is two fields of one clock reading).
func (s chaosSection) told() bool {
	return s.lostAt != 0 && s.end <= s.lostAt+int64(5*time.Millisecond)
}

// chaosOverlap is two sections on one slot that overlapped.
type chaosOverlap struct {
	earlier, later chaosSection
	kept           time.Duration // how long the told one went on after the overlap began
	problem        string        // "" when explained
}

func (o chaosOverlap) String() string {
	verdict := fmt.Sprintf("explained (went on %v)", o.kept)
	if o.problem != "" {
		verdict = "VIOLATION: " + o.problem
	}
	return fmt.Sprintf("%v [%d, %d] and %v [%d, %d]: %s", o.earlier, o.earlier.start, o.earlier.end, o.later, o.later.start, o.later.end, verdict)
}

// chaosAbove is a moment at which more sections were open than there are
// slots.
type chaosAbove struct {
	at        int64
	count     int
	explained bool // every slot with two sections open then had an explained overlap
}

// chaosCheck judges the sections: on each slot, as the root package's chaos
// test judges a Mutex's (two overlapping sections are allowed only if one of
// them was told its slot was lost, ended by then, and went on for no longer
// than bound after the overlap began); and overall, each moment at which more
// than n sections were open, which is explained when the sections in excess
// are those of explained overlaps.
func chaosCheck(secs []chaosSection, n int, bound time.Duration) ([]chaosOverlap, []chaosAbove) {
	secs = slices.Clone(secs)
	slices.SortFunc(secs, func(a, b chaosSection) int {
		return cmp.Or(cmp.Compare(a.start, b.start), cmp.Compare(a.worker, b.worker), cmp.Compare(a.seq, b.seq))
	})
	var overlaps []chaosOverlap
	explainedPair := make(map[[2]string]bool)
	for i := range secs {
		a := secs[i]
		for j := i + 1; j < len(secs) && secs[j].start < a.end; j++ {
			b := secs[j]
			if a.slot != b.slot {
				continue
			}
			o := chaosOverlap{earlier: a, later: b}
			explains := func(z chaosSection) bool { return z.told() && time.Duration(z.end-b.start) <= bound }
			switch {
			case a.worker == b.worker:
				o.problem = "one worker process held a slot twice at once"
			case explains(a):
				o.kept = time.Duration(a.end - b.start)
			case explains(b):
				o.kept = time.Duration(b.end - b.start)
			default:
				o.problem = fmt.Sprintf("neither was told its slot was lost within %v", bound)
			}
			if o.problem == "" {
				explainedPair[[2]string{a.String(), b.String()}] = true
			}
			overlaps = append(overlaps, o)
		}
	}
	// The sweep: at each start, the open sections by slot.
	var above []chaosAbove
	for _, s := range secs {
		var open []chaosSection
		for _, o := range secs {
			if o.start <= s.start && s.start < o.end {
				open = append(open, o)
			}
		}
		if len(open) <= n {
			continue
		}
		a := chaosAbove{at: s.start, count: len(open), explained: true}
		bySlot := make(map[int][]chaosSection)
		for _, o := range open {
			bySlot[o.slot] = append(bySlot[o.slot], o)
		}
		for _, group := range bySlot {
			for x := range group {
				for y := x + 1; y < len(group); y++ {
					p, q := group[x], group[y]
					if !explainedPair[[2]string{p.String(), q.String()}] && !explainedPair[[2]string{q.String(), p.String()}] {
						a.explained = false
					}
				}
			}
		}
		if len(bySlot) > n {
			a.explained = false // a slot out of range: impossible with n slots
		}
		above = append(above, a)
	}
	return overlaps, above
}

// The checker accepts exactly the overlaps a loss explains, and counts the
// moments above the slots.
func TestChaosCheck(t *testing.T) {
	t.Parallel()
	const ms = int64(time.Millisecond)
	bound := 2*150*time.Millisecond + chaosWatchDelay + chaosNotifyMargin
	sec := func(w string, seq, slot int, start, end, lostAt int64) chaosSection {
		return chaosSection{worker: w, seq: seq, slot: slot, start: start * ms, end: end * ms, lostAt: lostAt * ms}
	}
	tests := []struct {
		name               string
		secs               []chaosSection
		overlaps, problems int
		above, unexplained int
	}{
		{name: "two slots, two holders", secs: []chaosSection{sec("a", 1, 0, 0, 10, 0), sec("b", 1, 1, 0, 10, 0)}},
		{name: "back to back on a slot", secs: []chaosSection{sec("a", 1, 0, 0, 10, 0), sec("b", 1, 0, 10, 20, 0), sec("c", 1, 1, 5, 15, 0)}},
		{name: "a third on a slot, told", secs: []chaosSection{sec("a", 1, 0, 0, 100, 100), sec("b", 1, 0, 60, 200, 0), sec("c", 1, 1, 0, 300, 0)},
			overlaps: 1, above: 1},
		{name: "a third on a slot, not told", secs: []chaosSection{sec("a", 1, 0, 0, 100, 0), sec("b", 1, 0, 60, 200, 0), sec("c", 1, 1, 0, 300, 0)},
			overlaps: 1, problems: 1, above: 1, unexplained: 1},
		{name: "told too late", secs: []chaosSection{sec("a", 1, 0, 0, 5000, 5000), sec("b", 1, 0, 100, 6000, 0)}, overlaps: 1, problems: 1},
		{name: "same worker twice", secs: []chaosSection{sec("a", 1, 0, 0, 100, 100), sec("a", 2, 1, 50, 200, 0), sec("a", 3, 0, 60, 70, 0)},
			overlaps: 1, problems: 1, above: 1, unexplained: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			overlaps, above := chaosCheck(tt.secs, 2, bound)
			problems, unexplained := 0, 0
			for _, o := range overlaps {
				if o.problem != "" {
					problems++
				}
			}
			for _, a := range above {
				if !a.explained {
					unexplained++
				}
			}
			if len(overlaps) != tt.overlaps || problems != tt.problems || len(above) != tt.above || unexplained != tt.unexplained {
				t.Errorf("overlaps %d (problems %d), above %d (unexplained %d); want %d (%d), %d (%d)",
					len(overlaps), problems, len(above), unexplained, tt.overlaps, tt.problems, tt.above, tt.unexplained)
			}
		})
	}
}
