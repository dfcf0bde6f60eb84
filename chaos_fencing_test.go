package advisorylock_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/advisorylock/advisorylock/fence"
)

// TestChaos's fencing: every section's lock is fenced, and its worker writes
// to a fenced resource (package fence), once in the section and once more
// after it, just before the release, as a holder that may have lost the
// lock without heeding it would. The checks:
//
//   - tokens increase in grant order: of two sections, the one whose Lock
//     returned before the other's Lock was called was granted first, and
//     must have the smaller token (chaosTokenInversions);
//   - no stale write is accepted: the writes the resource accepted, in the
//     order they committed (chaosWritesTable's ids), never have a token older
//     than one accepted before; and no write was accepted after a write
//     with a newer token had returned accepted before it began
//     (chaosFenceCheck).

// recWrite is a worker's record of a fenced write:
//
//	W seq token outcome called returned    outcome: ok, stale, or chaosErrorClass's class
const recWrite = "W"

// chaosWritesTable logs the writes the fenced resource accepted, one row
// each, numbered as they take the resource's row: in commit order.
const chaosWritesTable = "chaos_writes"

// chaosWrite is one fenced write as a worker recorded it.
type chaosWrite struct {
	worker           string
	seq              int
	token            int64
	outcome          string
	called, returned int64
}

// write writes token to w's fenced resource, bounded by the lock's timeout,
// and by done (the lock's loss) when not nil, and records how it went.
func (w *chaosWorker) write(ctx context.Context, seq int, token int64, done <-chan struct{}) {
	wctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	if done != nil {
		go func() {
			select {
			case <-done:
				cancel()
			case <-wctx.Done():
			}
		}()
	}
	called := chaosNow()
	err := w.res.Write(wctx, token, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "insert into "+chaosWritesTable+" (token, worker, seq) values ($1, $2, $3)", token, w.name, seq)
		return err
	})
	returned := chaosNow()
	outcome := "ok"
	switch {
	case errors.Is(err, fence.ErrStale):
		outcome = "stale"
	case err != nil && ctx.Err() == nil && errors.Is(err, context.Canceled):
		outcome = "lost" // done: the lock was lost
	case err != nil:
		if outcome = chaosErrorClass(wctx, err); outcome == "" {
			w.t.Errorf("write %d: unexpected error: %v", seq, err)
			outcome = "unexpected"
		}
	}
	w.record(recWrite, seq, token, outcome, called, returned)
}

// parseChaosWrite parses a W record's fields.
func parseChaosWrite(worker string, f []string) (chaosWrite, error) {
	if len(f) != 6 {
		return chaosWrite{}, errors.New("not a write record")
	}
	w := chaosWrite{worker: worker, outcome: f[3]}
	var err [4]error
	var seq int64
	seq, err[0] = strconv.ParseInt(f[1], 10, 64)
	w.token, err[1] = strconv.ParseInt(f[2], 10, 64)
	w.called, err[2] = strconv.ParseInt(f[4], 10, 64)
	w.returned, err[3] = strconv.ParseInt(f[5], 10, 64)
	w.seq = int(seq)
	return w, errors.Join(err[:]...)
}

// chaosTokenInversion is a pair of sections whose tokens contradict the
// order in which they were surely granted.
type chaosTokenInversion struct {
	first, second chaosSection // first's Lock returned before second's was called
}

func (i chaosTokenInversion) String() string {
	return fmt.Sprintf("%v (token %d, began at %d) was granted before %v (token %d, called at %d), with a token not smaller",
		i.first, i.first.token, i.first.start, i.second, i.second.token, i.second.called)
}

// chaosTokenInversions finds the sections whose token is not larger than the
// token of a section granted surely before them: one whose start (read after
// its Lock returned, so after its grant) precedes their call to Lock (before
// their grant). For each section the check compares its token with the
// largest token of the sections that began before its call.
func chaosTokenInversions(secs []chaosSection) []chaosTokenInversion {
	byStart := slices.Clone(secs)
	slices.SortFunc(byStart, func(a, b chaosSection) int { return cmp.Compare(a.start, b.start) })
	// newest[i] is the section with the largest token among byStart[:i+1].
	newest := make([]int, len(byStart))
	for i := range byStart {
		newest[i] = i
		if i > 0 && byStart[newest[i-1]].token > byStart[i].token {
			newest[i] = newest[i-1]
		}
	}
	var out []chaosTokenInversion
	for _, s := range secs {
		n, _ := slices.BinarySearchFunc(byStart, s.called, func(a chaosSection, called int64) int {
			return cmp.Compare(a.start, called)
		})
		// byStart[:n] began before s was called.
		if n > 0 && byStart[newest[n-1]].token >= s.token {
			out = append(out, chaosTokenInversion{first: byStart[newest[n-1]], second: s})
		}
	}
	return out
}

// chaosFenceResult is what chaosFenceCheck found.
type chaosFenceResult struct {
	accepted, stale int            // writes, by the workers' records
	failed          map[string]int // writes that failed, by class
	committed       int            // writes in chaosWritesTable
	staleCommitted  []string       // committed after a newer token had committed
	staleAccepted   []string       // accepted after an accepted newer write had returned
}

// chaosFenceCheck judges the fenced writes: committed holds the tokens of
// chaosWritesTable's rows in commit order, writes the workers' records.
func chaosFenceCheck(committed []int64, writes []chaosWrite) chaosFenceResult {
	r := chaosFenceResult{committed: len(committed), failed: make(map[string]int)}
	var newest int64
	for i, tok := range committed {
		if tok < newest {
			r.staleCommitted = append(r.staleCommitted, fmt.Sprintf("commit %d: token %d after %d", i, tok, newest))
		}
		newest = max(newest, tok)
	}
	var accepted []chaosWrite
	for _, w := range writes {
		switch w.outcome {
		case "ok":
			r.accepted++
			accepted = append(accepted, w)
		case "stale":
			r.stale++
		default:
			r.failed[w.outcome]++
		}
	}
	byReturn := slices.Clone(accepted)
	slices.SortFunc(byReturn, func(a, b chaosWrite) int { return cmp.Compare(a.returned, b.returned) })
	newestBy := make([]int64, len(byReturn)) // the largest token among byReturn[:i+1]
	for i, w := range byReturn {
		newestBy[i] = w.token
		if i > 0 {
			newestBy[i] = max(newestBy[i], newestBy[i-1])
		}
	}
	for _, w := range accepted {
		n, _ := slices.BinarySearchFunc(byReturn, w.called, func(a chaosWrite, called int64) int {
			return cmp.Compare(a.returned, called)
		})
		if n > 0 && newestBy[n-1] > w.token {
			r.staleAccepted = append(r.staleAccepted, fmt.Sprintf("%s#%d's write with token %d accepted, called after a write with token %d was accepted",
				w.worker, w.seq, w.token, newestBy[n-1]))
		}
	}
	return r
}

// createChaosWrites creates chaosWritesTable in the test's database.
func (h *chaosHarness) createChaosWrites() {
	_, err := h.admin.Exec(context.Background(), "create table "+chaosWritesTable+
		" (id bigserial primary key, token bigint not null, worker text not null, seq int not null)")
	if err != nil {
		h.t.Fatal(err)
	}
}

// checkFencing runs the fencing checks, logs their counts in a line starting
// "chaos: fencing:", and fails the test for every inversion and every stale
// write accepted.
func (h *chaosHarness) checkFencing(secs []chaosSection, writes []chaosWrite) {
	t := h.t
	rows, err := h.admin.Query(context.Background(), "select token from "+chaosWritesTable+" order by id")
	if err != nil {
		t.Fatal(err)
	}
	committed, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	tokened := 0
	for _, s := range secs {
		if s.token <= 0 {
			t.Errorf("%v: token %d; want a positive one", s, s.token)
			continue
		}
		tokened++
	}
	inversions := chaosTokenInversions(secs)
	for _, i := range inversions {
		t.Errorf("token inversion: %v", i)
	}
	r := chaosFenceCheck(committed, writes)
	for _, s := range append(r.staleCommitted, r.staleAccepted...) {
		t.Errorf("stale write accepted: %s", s)
	}
	if r.accepted == 0 {
		t.Errorf("no fenced write was accepted")
	}
	t.Logf("chaos: fencing: sections-with-token=%d token-inversions=%d writes=%d accepted=%d (committed=%d) stale-rejected=%d failed=%s"+
		" stale-accepted=%d (in commit order=%d, after a newer write returned=%d)",
		tokened, len(inversions), len(writes), r.accepted, r.committed, r.stale, chaosCounts(r.failed),
		len(r.staleCommitted)+len(r.staleAccepted), len(r.staleCommitted), len(r.staleAccepted))
}

// The token check flags exactly the pairs whose grant order the records
// prove and whose tokens contradict it; the fence check flags exactly the
// stale writes accepted.
func TestChaosCheck_fencing(t *testing.T) {
	t.Parallel()
	sec := func(worker string, called, start, token int64) chaosSection {
		return chaosSection{worker: worker, seq: 1, called: called, start: start, end: start + 1, token: token}
	}
	for _, tt := range []struct {
		name       string
		secs       []chaosSection
		inversions int
	}{
		{"in order", []chaosSection{sec("a", 0, 10, 1), sec("b", 11, 20, 2), sec("c", 21, 30, 3)}, 0},
		{"waiters called before, granted after: order unknown", []chaosSection{sec("a", 0, 10, 5), sec("b", 5, 20, 4)}, 0},
		{"called after the other began, smaller token", []chaosSection{sec("a", 0, 10, 5), sec("b", 11, 20, 4)}, 1},
		{"equal tokens", []chaosSection{sec("a", 0, 10, 5), sec("b", 11, 20, 5)}, 1},
		{"against the largest before", []chaosSection{sec("a", 0, 10, 9), sec("b", 11, 20, 10), sec("c", 12, 30, 8)}, 1},
	} {
		if got := chaosTokenInversions(tt.secs); len(got) != tt.inversions {
			t.Errorf("%s: inversions %v; want %d", tt.name, got, tt.inversions)
		}
	}
	w := func(token int64, outcome string, called, returned int64) chaosWrite {
		return chaosWrite{worker: "w", token: token, outcome: outcome, called: called, returned: returned}
	}
	for _, tt := range []struct {
		name                   string
		committed              []int64
		writes                 []chaosWrite
		staleCommitted, staleA int
	}{
		{"newest wins", []int64{1, 1, 3}, []chaosWrite{w(1, "ok", 0, 1), w(1, "ok", 2, 3), w(3, "ok", 4, 5), w(2, "stale", 6, 7)}, 0, 0},
		{"concurrent, older accepted first", []int64{2, 3}, []chaosWrite{w(3, "ok", 0, 10), w(2, "ok", 1, 5)}, 0, 0},
		{"committed out of order", []int64{3, 2}, nil, 1, 0},
		{"accepted after a newer returned", []int64{3}, []chaosWrite{w(3, "ok", 0, 1), w(2, "ok", 2, 3)}, 0, 1},
	} {
		r := chaosFenceCheck(tt.committed, tt.writes)
		if len(r.staleCommitted) != tt.staleCommitted || len(r.staleAccepted) != tt.staleA {
			t.Errorf("%s: stale committed %q, accepted %q; want %d and %d", tt.name, r.staleCommitted, r.staleAccepted, tt.staleCommitted, tt.staleA)
		}
	}
	if _, err := parseChaosWrite("w", []string{recWrite, "3", "17", "stale", "100", "200"}); err != nil {
		t.Errorf("parseChaosWrite: %v", err)
	}
}
