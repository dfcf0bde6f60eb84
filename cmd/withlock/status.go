package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
)

// status prints, on stdout, the sessions that hold or await m's lock, and
// returns the exit status: 0, or 69 when the database cannot say.
func (a *app) status(ctx context.Context, pool *pgxpool.Pool, m *advisorylock.Mutex) int {
	if code := a.connect(ctx, pool); code != 0 || ctx.Err() != nil {
		return code
	}
	hs, err := m.Holders(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return 0
		}
		a.say("cannot list the holders of %s: %s", m, describe(err))
		return exitUnavailable
	}
	var b strings.Builder
	writeStatus(&b, m, hs, time.Now())
	code := a.writeRuns(ctx, pool, &b)
	os.Stdout.WriteString(b.String())
	return code
}

// writeStatus formats the holders and waiters of m's lock, as of now:
//
//	"deploy" (key (123,-456)): 1 holder, 1 waiter
//	STATE    PID    MODE       FOR     SINCE                    APPLICATION  USER      CLIENT
//	held     4242   exclusive  12.3s   2025-06-01T10:00:00.123Z withlock     postgres  127.0.0.1
//	waiting  4243   exclusive  3.1s    ...
func writeStatus(b *strings.Builder, m *advisorylock.Mutex, hs []advisorylock.Holder, now time.Time) {
	title := m.String()
	if m.Name() != "" {
		title += " (key " + m.Key().String() + ")"
	}
	held, waiting := 0, 0
	for _, h := range hs {
		if h.Granted {
			held++
		} else {
			waiting++
		}
	}
	if len(hs) == 0 {
		fmt.Fprintf(b, "%s: free\n", title)
		return
	}
	fmt.Fprintf(b, "%s: %s, %s\n", title, plural(held, "holder"), plural(waiting, "waiter"))
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STATE\tPID\tMODE\tFOR\tSINCE\tAPPLICATION\tUSER\tCLIENT")
	for _, h := range hs {
		state := "held"
		if !h.Granted {
			state = "waiting"
		}
		client := h.ClientAddr
		if client == "" {
			client = "local"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%v\t%s\t%s\t%s\t%s\n", state, h.PID, h.Mode,
			now.Sub(h.Since).Round(100*time.Millisecond), h.Since.Format("2006-01-02T15:04:05.000Z07:00"),
			orDash(h.ApplicationName), orDash(h.User), client)
	}
	tw.Flush()
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
