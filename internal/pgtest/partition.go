package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A real partition of the server's side.
//
// A frozen forwarder (Proxy.Freeze) silences the network for the client
// only: the forwarder's kernel still acknowledges what the server sends, and
// answers its TCP keepalives, so the server never drops the session. Partition
// drops the packets themselves, with iptables, in both directions between the
// server's port and one client port on the loopback interface: neither kernel
// hears from the other, exactly as across a cut cable, and nothing else on the
// machine is touched.
//
// Each rule carries a comment naming the test binary that made it
// (ruleTagPrefix and its process ID). The rules go when heal is called or the
// test ends; rules that a binary killed before its cleanups ran left behind
// are removed by the next Partition of any test binary, once their owner is
// gone.

// ruleTagPrefix starts the comment of every rule Partition inserts.
const ruleTagPrefix = "pgtest-partition-"

// iptablesTimeout bounds each iptables run.
const iptablesTimeout = 30 * time.Second

// sweepRulesOnce removes stale rules once per test binary.
var sweepRulesOnce sync.Once

// Partition cuts the network between the server and the client of session
// pid (a session of the server q is connected to, over TCP on 127.0.0.1), as
// a network that drops every packet would, until heal is called or t ends:
// whatever either side sends is lost, TCP keepalives included. heal is
// idempotent; a rule it cannot remove fails t.
//
// It needs iptables and the privilege to use it (root): without them, or for
// a session that is not on the loopback interface (a server given by
// ADVISORYLOCK_TEST_DSN elsewhere), it ends t through Unavailable, which
// fails t in CI rather than skipping it.
func Partition(t testing.TB, q Querier, pid int32) (heal func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), lockWait)
	defer cancel()
	var addr *string
	var clientPort, serverPort *int32
	err := q.QueryRow(ctx, `select host(a.client_addr), a.client_port, pg_catalog.inet_server_port()
		from pg_catalog.pg_stat_activity a where a.pid = $1`, pid).Scan(&addr, &clientPort, &serverPort)
	switch {
	case err != nil:
		t.Fatalf("pgtest: finding the connection of session %d: %v", pid, err)
	case addr == nil || clientPort == nil || serverPort == nil:
		Unavailable(t, "pgtest: partition: session %d is not a TCP connection seen from one", pid)
	case *addr != loopback:
		Unavailable(t, "pgtest: partition: session %d comes from %s, not %s", pid, *addr, loopback)
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		Unavailable(t, "pgtest: partition needs iptables (Debian: apt-get install iptables): %v", err)
	}
	sweepRulesOnce.Do(sweepStaleRules)

	tag := ruleTagPrefix + strconv.Itoa(os.Getpid())
	rules := [][]string{
		dropRule(int(*serverPort), int(*clientPort), tag),
		dropRule(int(*clientPort), int(*serverPort), tag),
	}
	var inserted [][]string
	var once sync.Once
	heal = func() {
		once.Do(func() {
			for _, r := range inserted {
				if err := iptables(append([]string{"-D"}, r...)...); err != nil {
					t.Errorf("pgtest: removing the partition rule %q: %v", strings.Join(r, " "), err)
				}
			}
		})
	}
	t.Cleanup(heal)
	for _, r := range rules {
		if err := iptables(append([]string{"-I"}, r...)...); err != nil {
			heal()
			Unavailable(t, "pgtest: partition: %v", err)
		}
		inserted = append(inserted, r)
	}
	return heal
}

// dropRule is the iptables rule, without its command, that drops the TCP
// packets from port src to port dst on the loopback interface.
func dropRule(src, dst int, tag string) []string {
	return []string{"INPUT", "-i", "lo", "-p", "tcp", "-s", loopback, "-d", loopback,
		"--sport", strconv.Itoa(src), "--dport", strconv.Itoa(dst),
		"-m", "comment", "--comment", tag, "-j", "DROP"}
}

// iptables runs iptables with args, waiting for the tables' lock if another
// run holds it.
func iptables(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), iptablesTimeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "iptables", append([]string{"-w"}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// sweepStaleRules removes the partition rules of test binaries that are
// gone. Rules it cannot list or remove are left alone.
func sweepStaleRules() {
	ctx, cancel := context.WithTimeout(context.Background(), iptablesTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "iptables", "-w", "-S", "INPUT").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 || fields[0] != "-A" {
			continue
		}
		owner := 0
		for _, f := range fields {
			if rest, ok := strings.CutPrefix(f, ruleTagPrefix); ok {
				owner, _ = strconv.Atoi(rest)
			}
		}
		if owner <= 0 || owner == os.Getpid() || !errors.Is(syscall.Kill(owner, 0), syscall.ESRCH) {
			continue
		}
		_ = iptables(append([]string{"-D"}, fields[1:]...)...)
	}
}
