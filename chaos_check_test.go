package advisorylock_test

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// This file is TestChaos's checker: the rule that decides whether two
// recorded critical sections may overlap, and its own test.

// chaosSection is one critical section as a worker recorded it. Times are
// chaosNow readings, one clock for every process.
type chaosSection struct {
	worker string // the worker process, chaos-SLOT.INCARNATION
	slot   int
	seq    int
	start  int64 // read after Lock returned: the server had granted the lock
	end    int64 // read before the release began, or the kill time
	lostAt int64 // when the holder was told the lock was lost; 0 if never
	killed bool  // the worker was SIGKILLed in the section; end is the kill
	token  int64 // the lock's fencing token
	called int64 // when the worker called Lock (or WithLock), before the grant
}

func (s chaosSection) String() string {
	return fmt.Sprintf("%s#%d", s.worker, s.seq)
}

// chaosOverlap is a pair of sections that overlapped: later began before
// earlier ended.
type chaosOverlap struct {
	earlier, later chaosSection
	// both is how long the two sections overlapped.
	both time.Duration
	// told is the section that was told its lock was lost, and so explains
	// the overlap; nil when neither explains it.
	told *chaosSection
	// bothTold is set when both sections explain the overlap.
	bothTold bool
	// kept is how long told went on after the overlap began.
	kept time.Duration
	// problem is why the overlap is a violation, "" when it is explained.
	problem string
}

// chaosNotifySlack is how long a holder may go on after it was told of the
// loss. The workers read lostAt and the section's end from one clock reading,
// so any slack will do; a little covers the record being two fields.
const chaosNotifySlack = 5 * time.Millisecond

// chaosWatchDelay mirrors the library's watch delay (watch.go): a session
// lock's connection is watched only once the lock has been held this long
// (watchDelay, 20ms, plus up to one tick of the goroutine that starts the
// watchers, 5ms).
const chaosWatchDelay = 25 * time.Millisecond

// chaosNotifyMargin is added to the notification bound for scheduling on a
// busy machine: two cores shared with other work, the race detector on, and
// several worker processes.
const chaosNotifyMargin = time.Second

// chaosNotifyBound is how long two sections may overlap, for a keepalive
// interval ka: how long a holder whose session no longer holds the lock may
// take to be told.
//
// A section is "backed" while its session holds the lock in the server. The
// ways TestChaos takes the lock from a session, and when its client hears of
// it:
//
//   - pg_terminate_backend, or a cut (reset) of its connection: the server
//     releases at once, and the holder's client reads the error or the reset
//     at once, on the idle connection its watcher blocks on.
//   - a frozen network: the server keeps the session, and the lock, until the
//     proxy passes on a close (after a thaw, once the holder has closed the
//     connection; or a cut). The holder's probe notices the silence within two
//     intervals, so it is usually told before anyone else can be granted the
//     lock, and no overlap arises.
//   - a frozen network and then pg_terminate_backend (an "isolate" fault):
//     the server releases at once, while the holder, which cannot hear the
//     termination, learns from its probe: within two intervals of the freeze.
//     This is the widest window: 2 × ka.
//   - a stale grant: a waiter's session is granted the lock while its network
//     is frozen, then terminated; the server releases at once, and when the
//     network thaws the client reads the grant, and Lock returns, and only
//     then the termination, which its watcher reads as soon as it starts.
//     The section is not backed at all; it is told within the watch delay.
//   - SIGKILL: the holder stops at the kill; the server releases only once the
//     kernel has closed the dead process's socket, so no overlap arises.
//
// Hence 2 × ka, plus the watch delay (a lock's first moments go unwatched: a
// loss then is noticed when the watcher starts, or at release), plus a margin
// for scheduling.
func chaosNotifyBound(ka time.Duration) time.Duration {
	return 2*ka + chaosWatchDelay + chaosNotifyMargin
}

// told reports whether the section was told its lock was lost, and ended by
// then.
func (s chaosSection) told() bool {
	return s.lostAt != 0 && s.end <= s.lostAt+int64(chaosNotifySlack)
}

// chaosCheck finds every pair of overlapping sections and judges each.
//
// A section's record lies inside the time its client believed it held the
// lock: its start is read after Lock returned, its end before the release
// began. The server never grants an exclusive lock to two sessions at once,
// so of two overlapping sections at least one was not backed (see
// chaosNotifyBound) while they overlapped: its session had lost the lock, or
// no longer held it when its client learned of the grant. A section that
// ended with a clean release (pg_advisory_unlock said true) was backed
// throughout: its session held the lock at the grant and at the release,
// never ended in between, and ran no other unlock. A section ended by SIGKILL
// was backed at the kill (TestChaos kills only the process whose session
// pg_locks shows holding the lock) and so, its session never having ended,
// throughout. So the unbacked one is one that was told of a loss. The overlap
// is explained, and allowed, only if one of the two
//
//  1. was told its lock was lost (Done closed, WithLock's context cancelled
//     with ErrLockLost, or, for a section that ended before the notice came,
//     the release reporting ErrLockLost),
//  2. ended its section by then: end ≤ lostAt + chaosNotifySlack,
//  3. and went on for no longer than bound (see chaosNotifyBound) after the
//     overlap began: it was told soon after another holder could begin.
//
// The third condition is measured from the overlap's beginning, not over its
// length: a holder whose loss went unnoticed for long, overlapping a series
// of short sections of others, fails it at the first of them.
//
// A killed section ends at the kill (read just before the signal is sent; the
// process may run on for microseconds, but the server cannot release its lock
// before the process is dead), and was not told: an overlap with it must be
// explained by the other section.
func chaosCheck(secs []chaosSection, bound time.Duration) []chaosOverlap {
	secs = slices.Clone(secs)
	slices.SortFunc(secs, func(a, b chaosSection) int {
		return cmp.Or(cmp.Compare(a.start, b.start), cmp.Compare(a.worker, b.worker), cmp.Compare(a.seq, b.seq))
	})
	var out []chaosOverlap
	for i := range secs {
		a := &secs[i]
		// Sorted by start: once a section starts at or after a's end, none
		// after it overlaps a either.
		for j := i + 1; j < len(secs) && secs[j].start < a.end; j++ {
			b := &secs[j]
			o := chaosOverlap{earlier: *a, later: *b, both: time.Duration(min(a.end, b.end) - b.start)}
			explains := func(z *chaosSection) bool {
				return z.told() && time.Duration(z.end-b.start) <= bound
			}
			switch {
			case explains(a) && explains(b):
				// Both were told; which one lost the lock first the records
				// cannot say, and either satisfies the rule. The one that
				// ended first gives the tighter account.
				o.told, o.bothTold = a, true
				if b.end < a.end {
					o.told = b
				}
			case explains(a):
				o.told = a
			case explains(b):
				o.told = b
			}
			if o.told != nil {
				o.kept = time.Duration(o.told.end - b.start)
			}
			switch {
			case a.worker == b.worker:
				o.problem = "one worker process held the lock twice at once"
			case o.told != nil:
			case !a.told() && !b.told():
				o.problem = "neither was told its lock was lost"
				for _, z := range []*chaosSection{a, b} {
					if z.lostAt != 0 {
						o.problem += fmt.Sprintf("; %v went on %v after it was told", z, time.Duration(z.end-z.lostAt))
					}
					if z.killed {
						o.problem += fmt.Sprintf("; %v was killed in it", z)
					}
				}
			default:
				z := a
				if !a.told() {
					z = b
				}
				o.problem = fmt.Sprintf("%v was told of the loss, but went on %v after the overlap began (bound %v)",
					z, time.Duration(z.end-b.start), bound)
			}
			out = append(out, o)
		}
	}
	return out
}

func (o chaosOverlap) String() string {
	verdict := "explained: " + o.explanation()
	if o.problem != "" {
		verdict = "VIOLATION: " + o.problem
	}
	return fmt.Sprintf("%v [%d, %d] and %v [%d, %d] overlapped %v; %s",
		o.earlier, o.earlier.start, o.earlier.end, o.later, o.later.start, o.later.end, o.both, verdict)
}

// whoTold says which section was told, for the counts: the earlier (it lost
// the lock), or the later (its grant was stale).
func (o chaosOverlap) whoTold() string {
	switch {
	case o.told == nil:
		return "none-told"
	case o.bothTold:
		return "both-told"
	case o.told.worker == o.earlier.worker && o.told.seq == o.earlier.seq:
		return "earlier-told"
	default:
		return "later-told"
	}
}

// explanation says which section was told: the earlier (it lost the lock), or
// the later (its grant was stale).
func (o chaosOverlap) explanation() string {
	switch {
	case o.told == nil:
		return "none told"
	case o.bothTold:
		return fmt.Sprintf("both told, the first to end went on %v", o.kept)
	case o.told.worker == o.earlier.worker && o.told.seq == o.earlier.seq:
		return fmt.Sprintf("earlier told, went on %v", o.kept)
	default:
		return fmt.Sprintf("later told, went on %v", o.kept)
	}
}

// The checker accepts exactly the overlaps the notification explains.
func TestChaosCheck(t *testing.T) {
	t.Parallel()
	const ms = int64(time.Millisecond)
	bound := chaosNotifyBound(150 * time.Millisecond)
	sec := func(worker string, seq int, start, end, lostAt int64) chaosSection {
		return chaosSection{worker: worker, seq: seq, start: start * ms, end: end * ms, lostAt: lostAt * ms}
	}
	killed := func(s chaosSection) chaosSection { s.killed = true; return s }
	tests := []struct {
		name     string
		secs     []chaosSection
		overlaps int
		problems int
		problem  string // a substring of the first problem
	}{
		{name: "one after another", secs: []chaosSection{sec("a", 1, 0, 10, 0), sec("b", 1, 10, 20, 0), sec("a", 2, 21, 30, 0)}},
		{name: "lost and told", secs: []chaosSection{sec("a", 1, 0, 100, 100), sec("b", 1, 60, 200, 0)}, overlaps: 1},
		{name: "told at release", secs: []chaosSection{sec("a", 1, 0, 10, 12), sec("b", 1, 5, 20, 0)}, overlaps: 1},
		{name: "stale grant told", secs: []chaosSection{sec("a", 1, 0, 300, 0), sec("b", 1, 100, 120, 120)}, overlaps: 1},
		{name: "neither told", secs: []chaosSection{sec("a", 1, 0, 100, 0), sec("b", 1, 60, 200, 0)}, overlaps: 1, problems: 1, problem: "neither"},
		{name: "went on after told", secs: []chaosSection{sec("a", 1, 0, 100, 50), sec("b", 1, 40, 200, 0)}, overlaps: 1, problems: 1, problem: "after it was told"},
		{name: "told too late", secs: []chaosSection{sec("a", 1, 0, 5000, 5000), sec("b", 1, 100, 6000, 0)}, overlaps: 1, problems: 1, problem: "bound"},
		{name: "stale grant told too late", secs: []chaosSection{sec("a", 1, 0, 9000, 0), sec("b", 1, 100, 5000, 5000)}, overlaps: 1, problems: 1, problem: "bound"},
		{
			name:     "told late, over short sections",
			secs:     []chaosSection{sec("a", 1, 0, 3000, 3100), sec("b", 1, 100, 200, 0), sec("c", 1, 2900, 3500, 0)},
			overlaps: 2, problems: 1, problem: "went on 2.9s after the overlap began",
		},
		{name: "killed holder overlapped", secs: []chaosSection{killed(sec("a", 1, 0, 100, 0)), sec("b", 1, 50, 200, 0)}, overlaps: 1, problems: 1, problem: "killed"},
		{name: "killed holder and a stale grant", secs: []chaosSection{killed(sec("a", 1, 0, 100, 0)), sec("b", 1, 50, 70, 70)}, overlaps: 1},
		{name: "killed holder then next", secs: []chaosSection{killed(sec("a", 1, 0, 100, 0)), sec("b", 1, 101, 200, 0)}},
		{name: "same worker twice", secs: []chaosSection{sec("a", 1, 0, 100, 100), sec("a", 2, 50, 200, 0)}, overlaps: 1, problems: 1, problem: "twice"},
		{name: "contained", secs: []chaosSection{sec("a", 1, 0, 300, 0), sec("b", 1, 100, 200, 0)}, overlaps: 1, problems: 1, problem: "neither"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := chaosCheck(tt.secs, bound)
			if len(got) != tt.overlaps {
				t.Fatalf("overlaps = %v; want %d", got, tt.overlaps)
			}
			var problems []string
			for _, o := range got {
				if o.problem != "" {
					problems = append(problems, o.problem)
				}
			}
			if len(problems) != tt.problems {
				t.Fatalf("problems = %q; want %d", problems, tt.problems)
			}
			if tt.problems > 0 && !strings.Contains(problems[0], tt.problem) {
				t.Errorf("problem = %q; want one containing %q", problems[0], tt.problem)
			}
		})
	}
}
