package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/advisorylock/advisorylock/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// demoTimeout bounds a run of the demo: it must take under a minute.
const demoTimeout = time.Minute

// TestDemo builds the demo once and runs it twice, as a newcomer would:
// against a database given in PG_CONNECTION_STRING, and with nothing set, so
// that it starts and stops a server of its own. Each run must exit 0 within a
// minute, tell a timeline that keeps the use cases' promises, and leave
// nothing behind.
func TestDemo(t *testing.T) {
	srv := pgtest.Require(t)
	bin := buildDemo(t)

	t.Run("PG_CONNECTION_STRING", func(t *testing.T) {
		t.Parallel()
		dsn := srv.CreateDatabase(t)
		out := runDemoBinary(t, bin, EnvConnectionString+"="+dsn)
		if !strings.Contains(out, "using the database in "+EnvConnectionString) {
			t.Errorf("the demo did not use %s:\n%s", EnvConnectionString, out)
		}
		checkTimeline(t, out)
		checkDatabaseClean(t, dsn)
	})

	t.Run("own server", func(t *testing.T) {
		if srv.Kind() == "env" {
			pgtest.Unavailable(t, "the tests use a server given in %s; the demo could not start one either", "ADVISORYLOCK_TEST_DSN")
		}
		t.Parallel()
		out := runDemoBinary(t, bin)
		m := regexp.MustCompile(`PostgreSQL ready on 127\.0\.0\.1:(\d+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("the demo did not start a server:\n%s", out)
		}
		checkTimeline(t, out)
	})
}

// buildDemo builds the demo into a directory removed when t ends, with the
// race detector when the tests have it.
func buildDemo(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "demo")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, ".")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runDemoBinary runs the demo with an environment of env alone (the tests' own PG*
// and harness variables kept out), checks that it exits 0 within a minute,
// with nothing on stderr, and that none of its processes outlive it. It
// returns its stdout.
func runDemoBinary(t *testing.T, bin string, env ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), demoTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	// The marker, passed on to the workers and to a server the demo starts,
	// finds whatever outlives the demo.
	marker := fmt.Sprintf("ADVISORYLOCK_DEMO_TEST=%s-%d", t.Name(), time.Now().UnixNano())
	cmd.Env = append([]string{marker, "PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + os.TempDir()}, env...)
	for _, name := range []string{"ADVISORYLOCK_TEST_PGBIN", "GORACE"} {
		if v, ok := os.LookupEnv(name); ok {
			cmd.Env = append(cmd.Env, name+"="+v)
		}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	elapsed := time.Since(start)
	t.Logf("the demo ran for %v:\n%s", elapsed.Round(time.Millisecond), stdout.String())
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("demo: %v; stderr:\n%s", err, stderr.String())
	}
	if elapsed >= demoTimeout {
		t.Errorf("the demo took %v; want under a minute", elapsed)
	}
	if pids := processesWith(t, marker); len(pids) > 0 {
		t.Errorf("processes of the demo (workers or server) still running after it exited: %v", pids)
	}
	return stdout.String()
}

// An event is a line of the timeline.
type event struct {
	at   time.Duration
	who  string
	what string
}

var eventLine = regexp.MustCompile(`^\s*(\d+\.\d{3})s  (\S+)\s+(.*)$`)

// parseTimeline splits the timeline into its acts, by their headings; act 0
// is what comes before the first.
func parseTimeline(t *testing.T, out string) [][]event {
	t.Helper()
	acts := [][]event{nil}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		switch {
		case line == "":
		case strings.HasPrefix(line, "== "):
			acts = append(acts, nil)
		default:
			m := eventLine.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("timeline line %q: not an event", line)
			}
			secs, _ := strconv.ParseFloat(m[1], 64)
			acts[len(acts)-1] = append(acts[len(acts)-1], event{at: time.Duration(secs * float64(time.Second)), who: m[2], what: m[3]})
		}
	}
	return acts
}

// checkTimeline checks the promises of the three acts in the order of the
// lines, which is the order in which the processes wrote them.
func checkTimeline(t *testing.T, out string) {
	t.Helper()
	acts := parseTimeline(t, out)
	if len(acts) != 4 {
		t.Fatalf("the timeline has %d acts; want 3", len(acts)-1)
	}
	checkClocks(t, acts[1])
	checkMigration(t, acts[2])
	checkElection(t, acts[3])
	last := acts[3][len(acts[3])-1]
	if last.who != "demo" || !strings.HasPrefix(last.what, "done in") {
		t.Errorf("last event %+v; want the demo done", last)
	}
}

// checkClocks: exactly one clock ticks at a time; the killed one never ticks
// again, and another took over after the kill.
func checkClocks(t *testing.T, act []event) {
	t.Helper()
	current, killed := "", ""
	var clocks []string
	ticks := map[string]int{}
	for _, e := range act {
		switch {
		case e.what == "became the clock":
			if current != "" && current != killed {
				t.Errorf("%s became the clock while %s, alive, was the clock", e.who, current)
			}
			current = e.who
			clocks = append(clocks, e.who)
		case strings.HasPrefix(e.what, "tick "):
			if e.who != current {
				t.Errorf("%s ticked while %s was the clock", e.who, current)
			}
			if e.who == killed {
				t.Errorf("%s ticked after it was killed", e.who)
			}
			ticks[e.who]++
		case e.who == "demo" && strings.HasPrefix(e.what, "kill -9 "):
			killed = strings.TrimSuffix(strings.Fields(e.what)[2], ":")
			if killed != current {
				t.Errorf("the demo killed %s; want the clock, %s", killed, current)
			}
		}
	}
	if len(clocks) != 2 || clocks[0] != killed || clocks[1] == killed {
		t.Errorf("clocks %v, killed %q; want the killed clock, then another", clocks, killed)
	}
	for _, c := range clocks {
		if ticks[c] == 0 {
			t.Errorf("%s never ticked", c)
		}
	}
}

// checkMigration: exactly one of the five replicas migrates; the others
// find the migration done, after it, and all five serve.
func checkMigration(t *testing.T, act []event) {
	t.Helper()
	migrator, migrated := "", false
	var nothing, serving int
	for _, e := range act {
		switch {
		case strings.HasSuffix(e.what, "schema at version 0; migrating"):
			if migrator != "" {
				t.Errorf("%s migrates too, after %s", e.who, migrator)
			}
			migrator = e.who
		case strings.HasPrefix(e.what, "migrated to version 1"):
			migrated = e.who == migrator
		case strings.HasSuffix(e.what, "nothing to do"):
			if !migrated || !strings.Contains(e.what, "(by "+migrator+")") {
				t.Errorf("%s: %q before or without %s's migration", e.who, e.what, migrator)
			}
			nothing++
		case e.what == "serving":
			serving++
		}
	}
	if migrator == "" || !migrated || nothing != 4 || serving != 5 {
		t.Errorf("migrated by %q (done %v), %d replicas with nothing to do, %d serving; want 1, 4, 5", migrator, migrated, nothing, serving)
	}
}

// checkElection: a leader posts the report; after its connection is cut it
// steps down, and another candidate is elected and posts.
func checkElection(t *testing.T, act []event) {
	t.Helper()
	var elected, posted []string
	cut, cutAt, stepped := "", -1, false
	for i, e := range act {
		switch {
		case e.what == "elected leader":
			elected = append(elected, e.who)
		case strings.HasPrefix(e.what, "posted the nightly report"):
			posted = append(posted, e.who)
		case e.who == "demo" && strings.Contains(e.what, "cutting its connection"):
			cut, cutAt = strings.Fields(e.what)[0], i
		case strings.HasPrefix(e.what, "lost leadership"):
			stepped = e.who == cut && cutAt >= 0
		}
	}
	if len(elected) != 2 || elected[0] != cut || elected[1] == cut {
		t.Errorf("elected %v, cut %q; want the cut leader, then another", elected, cut)
	}
	if fmt.Sprint(posted) != fmt.Sprint(elected) {
		t.Errorf("reports posted by %v; want one by each leader, %v", posted, elected)
	}
	if !stepped {
		t.Errorf("%s never said it lost leadership after the cut", cut)
	}
}

// checkDatabaseClean checks that the demo dropped its tables and left no
// advisory lock in dsn's database.
func checkDatabaseClean(t *testing.T, dsn string) {
	t.Helper()
	var tables int
	if err := pgtest.Connect(t, dsn).QueryRow(t.Context(), `select count(*) from pg_tables where tablename like 'advisorylock_demo_%'`).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Errorf("after the demo: %d demo tables; want none", tables)
	}
	// The demo's sessions may still be on their way out.
	pgtest.AwaitAdvisoryLocks(t, dsn, "true", 0)
}

// processesWith returns the pids of the processes whose environment holds
// the variable setting marker.
func processesWith(t *testing.T, marker string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		pgtest.Unavailable(t, "no /proc to check for leftover processes: %v", err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue // gone, or not ours to read
		}
		for _, kv := range strings.Split(string(b), "\x00") {
			if kv == marker {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}
