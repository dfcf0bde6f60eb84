package main

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
	"github.com/advisorylock/advisorylock/semaphore"
)

// envSlotsRun sets the shape of TestSlots_concurrency: "LANES,COMMANDS,HOLD",
// such as "8,50,200ms" (the default).
const envSlotsRun = "WITHLOCK_SLOTS_RUN"

// TestSlots_concurrency runs lanes of withlock -v --slots 3, each running its
// commands one after the other, every command recording when it started and
// ended (date +%s%N, appended to one file), and the test recording when each
// withlock said it waits for a slot. A checker over those times proves that
// never more than 3 commands ran at once, and that the slots were kept busy
// while work waited: over the time during which at least one withlock
// waited (from its "waiting for a slot" to its command's start), the mean
// number of commands running is at least 2.7. The figures are logged in a
// line starting "slots:".
func TestSlots_concurrency(t *testing.T) {
	// Serial: the mean concurrency depends on the CPUs being free of other tests.
	lanes, commands, hold := 8, 50, 200*time.Millisecond
	if v := os.Getenv(envSlotsRun); v != "" {
		f := strings.Split(v, ",")
		var err error
		if len(f) == 3 {
			if lanes, err = strconv.Atoi(f[0]); err == nil {
				if commands, err = strconv.Atoi(f[1]); err == nil {
					hold, err = time.ParseDuration(f[2])
				}
			}
		}
		if len(f) != 3 || err != nil || lanes < 4 || commands < 1 || hold <= 0 {
			t.Fatalf("%s=%q: want LANES,COMMANDS,HOLD, such as 8,50,200ms", envSlotsRun, v)
		}
	}
	const slots = 3
	_, env := testDB(t)
	bin := buildWithlock(t)
	file := filepath.Join(t.TempDir(), "times")
	script := fmt.Sprintf(`echo "$1 b $(date +%%s%%N)" >> %[1]s; sleep %[2]s; echo "$1 e $(date +%%s%%N)" >> %[1]s`,
		file, strconv.FormatFloat(hold.Seconds(), 'f', -1, 64))
	var mu sync.Mutex
	queued := map[string]int64{} // id → when its withlock said it waits
	var wg sync.WaitGroup
	began := time.Now()
	for lane := range lanes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range commands {
				id := fmt.Sprintf("%d.%d", lane, c)
				p := startBinary(t, bin, env, args([]string{"-v", "--slots", strconv.Itoa(slots), "slots-run"}, "sh", "-c", script, "sh", id)...)
				at := p.stderr.stamp("waiting for a slot")
				r := p.wait(t)
				if r.code != 0 {
					t.Errorf("lane %d command %d: exit status %d; stderr:\n%s", lane, c, r.code, r.stderr)
					return
				}
				if v := at.Load(); v != 0 {
					mu.Lock()
					queued[id] = v
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(began)
	if t.Failed() {
		return
	}
	runs := readRuns(t, file)
	if len(runs) != lanes*commands {
		t.Fatalf("%d commands recorded; want %d", len(runs), lanes*commands)
	}
	st := concurrency(runs)
	if st.most > slots {
		t.Errorf("%d commands ran at once; want at most %d", st.most, slots)
	}
	var waits []cmdRun // from "waiting for a slot" to the command's start
	for _, r := range runs {
		if at, ok := queued[r.id]; ok && at < r.start {
			waits = append(waits, cmdRun{id: r.id, start: at, end: r.start})
		}
	}
	mean, waited := st.meanWhile(concurrency(waits))
	if mean < 2.7 {
		t.Errorf("mean concurrency %.3f while work waited; want at least 2.7", mean)
	}
	t.Logf("slots: lanes=%d commands=%d hold=%v slots=%d ran=%v most-at-once=%d times-above-%d=%d"+
		" waited=%d of %d for %v; mean-concurrency-while-waiting=%.3f (%.3f over the whole run);"+
		" from a command's end with all slots busy to the next start: median %v p90 %v max %v",
		lanes, commands, hold, slots, elapsed.Round(time.Millisecond), st.most, slots, st.above(slots),
		len(waits), len(runs), time.Duration(waited).Round(time.Millisecond), mean, st.meanOver(runs[0].start, st.lastEnd),
		time.Duration(percentile(st.gaps, 0.5)).Round(10*time.Microsecond), time.Duration(percentile(st.gaps, 0.9)).Round(10*time.Microsecond),
		time.Duration(percentile(st.gaps, 1)).Round(10*time.Microsecond))
}

// buildWithlock builds withlock, without the race detector, into a directory
// removed when t ends: the figures of TestSlots_concurrency are those of the
// program users run; the race detector slows every process several times.
func buildWithlock(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "withlock")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startBinary starts the withlock binary bin as startWithlock starts the test
// binary as withlock.
func startBinary(t *testing.T, bin string, env []string, args ...string) *proc {
	t.Helper()
	return startProc(t, bin, nil, env, args...)
}

// cmdRun is one command's recorded start and end (Unix nanoseconds).
type cmdRun struct {
	id         string
	start, end int64
}

// readRuns reads the commands' records, sorted by start.
func readRuns(t *testing.T, file string) []cmdRun {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	byID := map[string]*cmdRun{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var id, what string
		var at int64
		if _, err := fmt.Sscanf(sc.Text(), "%s %s %d", &id, &what, &at); err != nil {
			t.Fatalf("record %q: %v", sc.Text(), err)
		}
		r := byID[id]
		if r == nil {
			r = &cmdRun{id: id}
			byID[id] = r
		}
		switch what {
		case "b":
			r.start = at
		case "e":
			r.end = at
		}
	}
	var runs []cmdRun
	for _, r := range byID {
		if r.start == 0 || r.end < r.start {
			t.Fatalf("command %s: start %d, end %d", r.id, r.start, r.end)
		}
		runs = append(runs, *r)
	}
	slices.SortFunc(runs, func(a, b cmdRun) int { return cmp.Compare(a.start, b.start) })
	return runs
}

// concurrencyStats is what the sweep over the runs found.
type concurrencyStats struct {
	steps     []step  // the number running from each step's time to the next's
	most      int     // the most running at once
	firstFull int64   // when the most first ran
	lastEnd   int64   // when the last ended
	gaps      []int64 // from a command's end to the next start, when the slots were full before (ns)
}

type step struct {
	at      int64
	running int
}

// concurrency sweeps the runs' starts and ends: an end and a start at the
// same instant count the end first.
func concurrency(runs []cmdRun) concurrencyStats {
	type edge struct {
		at    int64
		delta int
	}
	var edges []edge
	for _, r := range runs {
		edges = append(edges, edge{r.start, 1}, edge{r.end, -1})
	}
	slices.SortFunc(edges, func(a, b edge) int { return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.delta, b.delta)) })
	var st concurrencyStats
	running := 0
	var freedAt int64 // when a slot was freed from full, until the next start
	for _, e := range edges {
		if e.delta < 0 && running == st.most && freedAt == 0 {
			freedAt = e.at
		}
		running += e.delta
		if e.delta > 0 && freedAt != 0 {
			st.gaps = append(st.gaps, e.at-freedAt)
			freedAt = 0
		}
		if running > st.most {
			st.most, st.firstFull = running, e.at
		}
		st.steps = append(st.steps, step{e.at, running})
		st.lastEnd = e.at
	}
	return st
}

// meanOver returns the time-weighted mean number running from from to to.
func (st concurrencyStats) meanOver(from, to int64) float64 {
	if to <= from {
		return 0
	}
	var sum float64
	for i, s := range st.steps {
		next := to
		if i+1 < len(st.steps) {
			next = min(st.steps[i+1].at, to)
		}
		if lo := max(s.at, from); next > lo {
			sum += float64(s.running) * float64(next-lo)
		}
	}
	return sum / float64(to-from)
}

// meanWhile returns the time-weighted mean number running over the times when
// w, another sweep, had at least one running, and the length of those times.
func (st concurrencyStats) meanWhile(w concurrencyStats) (mean float64, total int64) {
	var sum float64
	for i, s := range w.steps {
		if s.running == 0 || i+1 == len(w.steps) {
			continue
		}
		from, to := s.at, w.steps[i+1].at
		sum += st.meanOver(from, to) * float64(to-from)
		total += to - from
	}
	if total == 0 {
		return 0, 0
	}
	return sum / float64(total), total
}

// above returns how many times the number running rose above n.
func (st concurrencyStats) above(n int) int {
	count, prev := 0, 0
	for _, s := range st.steps {
		if s.running > n && prev <= n {
			count++
		}
		prev = s.running
	}
	return count
}

// percentile returns the p-quantile of xs (0 for none).
func percentile(xs []int64, p float64) int64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s)-1)+0.5))]
}

// The checker counts what it should: runs that overlap four at once are
// found, back-to-back runs are not, and the mean is time-weighted.
func TestConcurrencyChecker(t *testing.T) {
	t.Parallel()
	runs := []cmdRun{{"a", 0, 10}, {"b", 0, 10}, {"c", 0, 5}, {"d", 5, 10}}
	st := concurrency(runs)
	if st.most != 3 || st.above(3) != 0 {
		t.Errorf("back to back: most %d, above 3 %d times; want 3 and 0", st.most, st.above(3))
	}
	if m := st.meanOver(0, 10); m != 3 {
		t.Errorf("mean %v; want 3", m)
	}
	st = concurrency(append(runs, cmdRun{"e", 2, 4}))
	if st.most != 4 || st.above(3) != 1 {
		t.Errorf("overlapping: most %d, above 3 %d times; want 4 and 1", st.most, st.above(3))
	}
	st = concurrency([]cmdRun{{"a", 0, 10}, {"b", 5, 10}})
	if m := st.meanOver(0, 10); m != 1.5 {
		t.Errorf("mean %v; want 1.5", m)
	}
	// Waiting from 2 to 6 and from 8 to 9: 1 running for 3, 2 for 2.
	if m, total := st.meanWhile(concurrency([]cmdRun{{"w", 2, 6}, {"x", 8, 9}})); m != 1.4 || total != 5 {
		t.Errorf("mean while waiting %v over %d; want 1.4 over 5", m, total)
	}
}

// -n fails at once, with the conflict exit code, when every slot is held.
func TestSlots_nonblock(t *testing.T) {
	t.Parallel()
	dsn, env := testDB(t)
	s := semaphore.New(pgtest.NewPool(t, dsn), "slots-n", 2)
	var held []*advisorylock.Lock
	for range 2 {
		l, err := s.Lock(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, l)
	}
	r := withlock(t, env, args([]string{"-n", "-E", "7", "--slots", "2", "slots-n"}, "echo", "ran")...)
	wantCode(t, r, 7)
	if r.stdout != "" {
		t.Errorf("stdout %q; want nothing: every slot is held", r.stdout)
	}
	for _, l := range held[1:] {
		_ = l.Unlock(t.Context())
	}
	r = withlock(t, env, args([]string{"-n", "-v", "--slots", "2", "slots-n"}, "echo", "ran")...)
	wantCode(t, r, 0)
	if r.stdout != "ran\n" || !strings.Contains(r.stderr, `acquired slot `) || !strings.Contains(r.stderr, `of semaphore "slots-n" (2 slots)`) {
		t.Errorf("stdout %q, stderr %q; want the command's output, and the slot named", r.stdout, r.stderr)
	}
	_ = held[0].Unlock(t.Context())
}

// A waiting withlock takes the slot released by another, and -w bounds the
// wait.
func TestSlots_waitAndTimeout(t *testing.T) {
	t.Parallel()
	dsn, env := testDB(t)
	pool := pgtest.NewPool(t, dsn)
	s := semaphore.New(pool, "slots-w", 1)
	l, err := s.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	r := withlock(t, env, args([]string{"-w", "200ms", "--slots", "1", "slots-w"}, "echo", "ran")...)
	wantCode(t, r, 1)
	p := startWithlock(t, env, args([]string{"-v", "--slots", "1", "slots-w"}, "echo", "ran")...)
	p.stderr.await(t, "waiting for a slot of semaphore")
	pgtest.AwaitAdvisoryLocks(t, dsn, keyCond(s.QueueKey()), 1)
	if err := l.Unlock(t.Context()); err != nil {
		t.Fatal(err)
	}
	r = p.wait(t)
	wantCode(t, r, 0)
	if r.stdout != "ran\n" {
		t.Errorf("stdout %q; want the command's output", r.stdout)
	}
}

// A slot lost while the command runs stops the command, and withlock exits
// 75 naming the slot.
func TestSlots_lost(t *testing.T) {
	t.Parallel()
	dsn, env := testDB(t)
	p := startWithlock(t, env, args([]string{"--slots", "2", "slots-lost"}, "sh", "-c", "echo started; exec sleep 60")...)
	p.stdout.await(t, "started")
	admin := connect(t, dsn)
	var pid int32
	if err := admin.QueryRow(context.Background(), `select pid from pg_locks where locktype = 'advisory' and granted
		and database = (select oid from pg_database where datname = current_database())`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(context.Background(), "select pg_terminate_backend($1)", pid); err != nil {
		t.Fatal(err)
	}
	r := p.wait(t)
	wantCode(t, r, exitLost)
	if !strings.Contains(r.stderr, `lock slot `) || !strings.Contains(r.stderr, `of semaphore "slots-lost" (2 slots) lost while the command ran`) {
		t.Errorf("stderr %q; want the lost slot named", r.stderr)
	}
}

// --status --slots lists the holder of each slot, then the waiters.
func TestSlots_status(t *testing.T) {
	t.Parallel()
	dsn, env := testDB(t)
	r := withlock(t, env, "--status", "--slots", "2", "slots-status")
	wantCode(t, r, 0)
	if want := "0 of 2 slots held, 0 waiters\n"; !strings.HasSuffix(r.stdout, want) {
		t.Errorf("stdout %q; want it to end %q", r.stdout, want)
	}
	s := semaphore.New(pgtest.NewPool(t, dsn), "slots-status", 2)
	for range 2 {
		l, err := s.Lock(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Unlock(context.Background()) })
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	waited := make(chan error, 1)
	go func() {
		l, err := semaphore.New(pgtest.NewPool(t, dsn), "slots-status", 2).Lock(ctx)
		if l != nil {
			_ = l.Unlock(context.Background())
		}
		waited <- err
	}()
	pgtest.AwaitAdvisoryLocks(t, dsn, keyCond(s.QueueKey()), 1)
	r = withlock(t, env, "--status", "--slots", "2", "slots-status")
	wantCode(t, r, 0)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 5 || !strings.Contains(lines[0], `semaphore "slots-status" (2 slots; queue key `) ||
		!strings.Contains(lines[0], "2 of 2 slots held, 1 waiter") || !strings.HasPrefix(lines[1], "STATE") ||
		!strings.HasPrefix(lines[2], "held     0") || !strings.HasPrefix(lines[3], "held     1") || !strings.HasPrefix(lines[4], "waiting  -") {
		t.Errorf("status:\n%s", r.stdout)
	}
	cancel()
	<-waited
}

// keyCond is the pg_locks condition that selects a bigint key's rows.
func keyCond(k advisorylock.Key) string {
	v, _ := k.Int64()
	return fmt.Sprintf("objsubid = 1 and classid::int8 = %d and objid::int8 = %d", uint64(v)>>32, uint32(v))
}
