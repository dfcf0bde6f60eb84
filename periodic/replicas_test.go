package periodic_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock/periodic"
)

// envReplicas selects TestReplicas's long form: "long" (20s, three replicas
// killed mid-run) or a duration (that long, a kill every 5s). Unset, it runs
// its short form: 5s, one kill.
const envReplicas = "ADVISORYLOCK_PERIODIC_REPLICAS"

// replicasPlan is the shape of one TestReplicas run.
type replicasPlan struct {
	replicas int
	every    time.Duration // each replica's Tick interval
	period   time.Duration
	hold     time.Duration // how long a run lasts
	duration time.Duration
	kills    []time.Duration // when (from the start) to kill the next replica that begins a run
}

func replicasPlanFromEnv(t *testing.T) replicasPlan {
	t.Helper()
	p := replicasPlan{
		replicas: 10,
		every:    200 * time.Millisecond,
		period:   time.Second,
		hold:     300 * time.Millisecond,
		duration: 5 * time.Second,
		kills:    []time.Duration{2 * time.Second},
	}
	switch v := os.Getenv(envReplicas); v {
	case "":
	case "long":
		p.duration, p.kills = 20*time.Second, []time.Duration{5 * time.Second, 10 * time.Second, 15 * time.Second}
	default:
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("%s=%q: want \"long\" or a positive duration", envReplicas, v)
		}
		p.duration, p.kills = d, nil
		for at := 5 * time.Second; at < d; at += 5 * time.Second {
			p.kills = append(p.kills, at)
		}
	}
	return p
}

// TestReplicas runs a job's Tick in replicas that are separate OS processes
// (the test binary run again, see runReplicaWorker), each ticking every 200ms
// with a period of 1s and a clock skewed its own way by up to an hour, and
// kills some of them (SIGKILL) in the middle of a run, starting a
// replacement each time. From the runs table's history (a trigger records
// every change, on the server's clock) it checks that no two successful runs
// began within one period, that their number fits the time, that each killed
// run never counted and was retried by another replica, and that the runs
// went on to the end. It logs the figures, in a line starting "replicas:".
func TestReplicas(t *testing.T) {
	// Serial: ten processes timed against each other need the CPUs.
	plan := replicasPlanFromEnv(t)
	dsn := testDB(t)
	admin := newPool(t, dsn)
	recordHistory(t, admin, periodic.DefaultSchema)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	h := &replicasHarness{t: t, plan: plan, exe: exe, dsn: dsn, events: make(chan replicaEvent, 64), quit: make(chan struct{})}
	t.Cleanup(h.killAll)
	for slot := range plan.replicas {
		h.start(slot)
	}
	h.awaitReady()

	t0 := serverNow(t, admin)
	began := time.Now()
	type kill struct {
		token    int64
		identity string
		killAt   time.Time // server clock, right before the SIGKILL
	}
	var kills []kill
	// The runs begun in the window get the time to end.
	deadline := time.NewTimer(plan.duration + plan.period)
	defer deadline.Stop()
	next := 0 // the next kill in plan.kills
	for done := false; !done; {
		select {
		case <-deadline.C:
			done = true
		case ev := <-h.events:
			switch {
			case ev.exited:
				if !ev.killed {
					t.Fatalf("replica %s exited on its own: %v\n%s", ev.proc.identity, ev.err, ev.proc.stderr())
				}
			case ev.token != 0 && next < len(plan.kills) && time.Since(began) >= plan.kills[next]:
				// A run has just begun there: kill its replica mid-run.
				at := serverNow(t, admin)
				ev.proc.kill()
				kills = append(kills, kill{token: ev.token, identity: ev.proc.identity, killAt: at})
				next++
				h.start(ev.proc.slot)
			}
		}
	}
	h.stopAll()
	t1 := t0.Add(plan.duration)

	hist := readHistory(t, admin)
	if os.Getenv("DEBUG_HISTORY") != "" {
		for _, e := range hist {
			t.Logf("%+v", e)
		}
		for _, p := range h.procs {
			t.Logf("%s stderr: %s", p.identity, p.stderr())
		}
		t.Logf("t0 %v t1 %v", t0, t1)
	}
	ok := successes(hist)
	checkSpacing(t, hist, plan.period)
	var inWindow []periodic.Run
	for _, r := range ok {
		if !r.StartedAt.Before(t0) && r.StartedAt.Before(t1) {
			inWindow = append(inWindow, r)
		}
	}
	window := t1.Sub(t0)
	if limit := int(window/plan.period) + 1; len(inWindow) > limit {
		t.Errorf("%d successful runs in %v; at most %d fit with a period of %v", len(inWindow), window, limit, plan.period)
	}
	// Progress: runs to the end (the last period of the window had one).
	if len(inWindow) == 0 || t1.Sub(inWindow[len(inWindow)-1].StartedAt) > 3*plan.period {
		t.Errorf("the runs stopped: last successful run in the window %v; the window ended %v", inWindow, t1)
	}

	// Each killed run: begun, never ended, never counted; the next run
	// begun after the kill, by another replica, retried it.
	var retries []time.Duration
	begun := starts(hist)
	for _, k := range kills {
		i := slices.IndexFunc(begun, func(e historyEntry) bool { return e.run == k.token })
		if i < 0 {
			t.Errorf("killed run #%d: not in the history", k.token)
			continue
		}
		if slices.ContainsFunc(hist, func(e historyEntry) bool { return e.run == k.token && e.finished }) ||
			slices.ContainsFunc(ok, func(r periodic.Run) bool { return r.Token == k.token }) {
			t.Errorf("killed run #%d was recorded as ended, or counted", k.token)
		}
		if i+1 >= len(begun) {
			t.Errorf("killed run #%d was never retried", k.token)
			continue
		}
		retry := begun[i+1]
		if retry.run != k.token+1 || retry.startedBy == k.identity || retry.startedAt.Before(k.killAt) {
			t.Errorf("killed run #%d of %s (killed at %v): the next run begun is #%d by %s at %v; want #%d by another replica, after the kill",
				k.token, k.identity, k.killAt, retry.run, retry.startedBy, retry.startedAt, k.token+1)
		}
		retries = append(retries, retry.startedAt.Sub(k.killAt))
	}

	byReplica := map[string]int{}
	for _, e := range hist {
		if e.finished && e.failure == "" && e.successRun == e.run {
			byReplica[strings.SplitN(e.startedBy, ".", 2)[0]]++
		}
	}
	gaps := make([]time.Duration, 0, len(ok))
	for i := 1; i < len(ok); i++ {
		gaps = append(gaps, ok[i].StartedAt.Sub(ok[i-1].StartedAt))
	}
	slices.Sort(gaps)
	t.Logf("replicas: %d processes (%d replicas, %d killed), every %v, period %v, window %v (server clock): "+
		"%d successful runs in the window, %d in all, %d begun; gaps between successful starts min %v median %v max %v; "+
		"killed runs %v retried %v after the kill; runs by replica %v",
		len(h.procs), plan.replicas, len(kills), plan.every, plan.period, window.Round(time.Millisecond),
		len(inWindow), len(ok), len(begun), pick(gaps, 0), pick(gaps, len(gaps)/2), pick(gaps, len(gaps)-1),
		tokens(kills, func(k kill) int64 { return k.token }), roundAll(retries), byReplica)
}

// serverNow reads the server's clock.
func serverNow(t *testing.T, pool *pgxpool.Pool) time.Time {
	t.Helper()
	var now time.Time
	if err := pool.QueryRow(context.Background(), "select clock_timestamp()").Scan(&now); err != nil {
		t.Fatal(err)
	}
	return now
}

func pick(ds []time.Duration, i int) time.Duration {
	if i < 0 || i >= len(ds) {
		return 0
	}
	return ds[i].Round(100 * time.Microsecond)
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

func tokens[T any](xs []T, f func(T) int64) []int64 {
	out := make([]int64, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

// replicasHarness runs TestReplicas's processes. Only the test's goroutine
// uses it, but for the events channel.
type replicasHarness struct {
	t            *testing.T
	plan         replicasPlan
	exe, dsn     string
	events       chan replicaEvent
	quit         chan struct{}  // closed when the test ends: events has no reader
	procs        []*replicaProc // every process, in start order
	incarnations map[int]int    // processes started per slot
}

// replicaEvent is a line a replica wrote, or its exit.
type replicaEvent struct {
	proc   *replicaProc
	ready  bool
	token  int64 // a run began
	exited bool
	killed bool
	err    error
}

type replicaProc struct {
	slot     int
	identity string
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	mu       sync.Mutex
	errBuf   strings.Builder // guarded by mu
	killed   bool            // the test killed it; guarded by mu
	exited   chan struct{}
}

func (p *replicaProc) stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.errBuf.String()
}

type lockedWriter struct{ p *replicaProc }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.errBuf.Write(b)
}

// kill sends SIGKILL.
func (p *replicaProc) kill() {
	p.mu.Lock()
	p.killed = true
	p.mu.Unlock()
	_ = p.cmd.Process.Kill()
}

// start starts the replica process of slot (again, after a kill).
func (h *replicasHarness) start(slot int) {
	t := h.t
	if h.incarnations == nil {
		h.incarnations = map[int]int{}
	}
	h.incarnations[slot]++
	cfg := replicaConfig{
		DSN:      h.dsn,
		Identity: fmt.Sprintf("replica-%d.%d", slot, h.incarnations[slot]),
		Name:     "stats",
		Every:    h.plan.every,
		Period:   h.plan.period,
		Hold:     h.plan.hold,
		// From 55 minutes behind to 46 ahead, and a few seconds either way.
		Skew: time.Duration(slot-5)*11*time.Minute + time.Duration(slot*slot)*time.Second,
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(h.exe)
	cmd.Env = append(os.Environ(), envReplicaWorker+"="+string(raw))
	p := &replicaProc{slot: slot, identity: cfg.Identity, cmd: cmd, exited: make(chan struct{})}
	cmd.Stderr = lockedWriter{p}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h.procs = append(h.procs, p)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			ev := replicaEvent{proc: p}
			switch {
			case line == lineReady:
				ev.ready = true
			case strings.HasPrefix(line, lineRunning+" "):
				ev.token, _ = strconv.ParseInt(strings.TrimPrefix(line, lineRunning+" "), 10, 64)
			default:
				continue
			}
			select {
			case h.events <- ev:
			case <-h.quit:
			}
		}
		err := cmd.Wait()
		close(p.exited)
		p.mu.Lock()
		killed := p.killed
		p.mu.Unlock()
		select {
		case h.events <- replicaEvent{proc: p, exited: true, killed: killed, err: err}:
		default: // nobody listens any more
		}
	}()
}

// awaitReady waits until every replica started so far said it is ready.
func (h *replicasHarness) awaitReady() {
	ready := 0
	timeout := time.After(time.Minute)
	for ready < len(h.procs) {
		select {
		case ev := <-h.events:
			switch {
			case ev.ready:
				ready++
			case ev.exited:
				h.t.Fatalf("replica %s exited before it was ready: %v\n%s", ev.proc.identity, ev.err, ev.proc.stderr())
			}
		case <-timeout:
			h.t.Fatalf("%d of %d replicas ready after a minute", ready, len(h.procs))
		}
	}
}

// stopAll closes every live replica's standard input, which ends its Tick,
// and waits for it to exit: each must exit 0.
func (h *replicasHarness) stopAll() {
	for _, p := range h.procs {
		_ = p.stdin.Close()
	}
	// Drain the events while they exit, so that no reader blocks.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-h.events:
			case <-stop:
				return
			}
		}
	}()
	for _, p := range h.procs {
		select {
		case <-p.exited:
		case <-time.After(30 * time.Second):
			h.t.Errorf("replica %s still running 30s after its input closed", p.identity)
			continue
		}
		p.mu.Lock()
		killed := p.killed
		p.mu.Unlock()
		if !killed && !p.cmd.ProcessState.Success() {
			h.t.Errorf("replica %s: %v\n%s", p.identity, p.cmd.ProcessState, p.stderr())
		}
	}
}

// killAll kills whatever replica is still running when the test ends.
func (h *replicasHarness) killAll() {
	close(h.quit)
	for _, p := range h.procs {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	}
}
