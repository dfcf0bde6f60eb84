package pgtest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// rulesOf returns the INPUT rules whose comment is tag.
func rulesOf(t *testing.T, tag string) []string {
	t.Helper()
	out, err := exec.Command("iptables", "-w", "-S", "INPUT").Output()
	if err != nil {
		t.Fatalf("iptables -S: %v", err)
	}
	var rules []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "--comment "+tag+" ") {
			rules = append(rules, line)
		}
	}
	return rules
}

// Partition silences one session, both ways, and nothing else; heal and the
// test's end remove its rules.
func TestPartition(t *testing.T) {
	srv := Require(t)
	ctx := testContext(t)
	cfg, err := pgx.ParseConfig(srv.DSN())
	if err != nil {
		t.Fatal(err)
	}
	victim, admin := connect(t, ctx, cfg), connect(t, ctx, cfg)
	tag := ruleTagPrefix + strconv.Itoa(os.Getpid())

	heal := Partition(t, admin, int32(victim.PgConn().PID()))
	if got := rulesOf(t, tag); len(got) != 2 {
		t.Fatalf("partition rules %q; want two, one each way", got)
	}
	qctx, cancel := context.WithTimeout(ctx, time.Second)
	err = victim.QueryRow(qctx, "select 1").Scan(new(int))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a query across the partition = %v; want no answer (context.DeadlineExceeded)", err)
	}
	if err := admin.QueryRow(ctx, "select 1").Scan(new(int)); err != nil {
		t.Errorf("another session during the partition: %v; want it unaffected", err)
	}
	heal()
	heal()
	if got := rulesOf(t, tag); len(got) != 0 {
		t.Errorf("rules after heal: %q; want none", got)
	}
}

// A rule left behind by a test binary that is gone is removed; one whose
// owner lives is kept.
func TestSweepStaleRules(t *testing.T) {
	if _, err := exec.LookPath("iptables"); err != nil {
		Unavailable(t, "iptables: %v", err)
	}
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	// The parent of this binary lives; the process that ran true is gone.
	// Ports 1 and 2 on loopback carry nothing.
	stale := dropRule(1, 2, ruleTagPrefix+strconv.Itoa(gone.Process.Pid))
	alive := dropRule(2, 1, ruleTagPrefix+strconv.Itoa(os.Getppid()))
	for _, r := range [][]string{stale, alive} {
		if err := iptables(append([]string{"-I"}, r...)...); err != nil {
			Unavailable(t, "%v", err)
		}
		t.Cleanup(func() { _ = iptables(append([]string{"-D"}, r...)...) })
	}
	sweepStaleRules()
	if got := rulesOf(t, ruleTagPrefix+strconv.Itoa(gone.Process.Pid)); len(got) != 0 {
		t.Errorf("stale rules %q after the sweep; want none", got)
	}
	if got := rulesOf(t, ruleTagPrefix+strconv.Itoa(os.Getppid())); len(got) != 1 {
		t.Errorf("rules of a live owner after the sweep: %q; want it kept", got)
	}
}
