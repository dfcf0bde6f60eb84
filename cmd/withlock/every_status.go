package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock/periodic"
)

// writeRuns adds to b, for --status, the runs that withlock --every (or
// package periodic) recorded under the lock's name, and returns the exit
// status: 0, or 69 when --every asked for them and they cannot be read. A
// lock given by --key has no runs.
func (a *app) writeRuns(ctx context.Context, pool *pgxpool.Pool, b *strings.Builder) int {
	if a.o.name == "" {
		return 0
	}
	s, err := a.job(pool).Status(ctx)
	switch {
	case ctx.Err() != nil:
		return 0
	case err != nil:
		a.say("cannot read the recorded runs of %q: %s", a.o.name, describe(err))
		if a.o.every > 0 {
			return exitUnavailable
		}
		return 0
	}
	writeRunStatus(b, s, a.o.every)
	return 0
}

// writeRunStatus formats a job's record, all on the server's clock; with
// every (--every), also when the next run is due:
//
//	last run:     #42 by web-3:4242, began 2026-12-01T10:00:00.123Z (12m3s ago), failed after 1.2s: exit status 3
//	last success: #41 by web-1:977, began 2026-12-01T09:30:00.045Z (42m3s ago), took 2.5s
//	next due:     now (--every 30m)
func writeRunStatus(b *strings.Builder, s periodic.Status, every time.Duration) {
	if s.Last.Token == 0 {
		if every > 0 {
			fmt.Fprintf(b, "runs:         none recorded; the next is due now (--every %v)\n", every)
		}
		return
	}
	fmt.Fprintf(b, "last run:     %s\n", describeRun(s.Last, s.Now, s.Held))
	switch {
	case s.LastSuccess.Token == 0:
		b.WriteString("last success: none\n")
	case s.LastSuccess.Token != s.Last.Token:
		fmt.Fprintf(b, "last success: %s\n", describeRun(s.LastSuccess, s.Now, false))
	}
	if every > 0 {
		if s.Due.After(s.Now) {
			fmt.Fprintf(b, "next due:     in %v, at %s (--every %v)\n", roundDuration(s.Due.Sub(s.Now)), stamp(s.Due), every)
		} else {
			fmt.Fprintf(b, "next due:     now (--every %v)\n", every)
		}
	}
}

// describeRun says who ran r, when, and how it ended, now being the server's
// clock and held whether the lock is held now.
func describeRun(r periodic.Run, now time.Time, held bool) string {
	s := fmt.Sprintf("#%d by %s, began %s (%v ago), ", r.Token, r.By, stamp(r.StartedAt), roundDuration(now.Sub(r.StartedAt)))
	took := roundDuration(r.FinishedAt.Sub(r.StartedAt))
	switch {
	case r.FinishedAt.IsZero() && held:
		return s + "under way"
	case r.FinishedAt.IsZero():
		return s + "never ended (its process died)"
	case r.Failure != "":
		return s + fmt.Sprintf("failed after %v: %s", took, r.Failure)
	}
	return s + fmt.Sprintf("took %v", took)
}

// stamp formats a time as --status does.
func stamp(t time.Time) string { return t.Format("2006-01-02T15:04:05.000Z07:00") }
