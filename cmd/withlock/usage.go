package main

import (
	"fmt"
	"io"
	"strings"
)

// synopsis is the short usage printed with a usage error.
const synopsis = `usage: withlock [options] <lock-name> [options] -- <command> [args...]
       withlock [options] --key K -- <command> [args...]
       withlock --status [options] (<lock-name> | --key K) [options]
Try 'withlock --help' for more.
`

// helpHead and helpTail frame the option list, which is made from flagSpecs.
const helpHead = `withlock runs a command while holding a PostgreSQL advisory lock, so that
only one such command runs at a time across all the machines that share the
database. It behaves like flock(1), with a database in place of a file.

usage: withlock [options] <lock-name> [options] -- <command> [args...]
       withlock [options] --key K -- <command> [args...]
       withlock --status [options] (<lock-name> | --key K) [options]

Options go before or after the lock name, in any order, up to "--"; all
that follows "--" is the command, passed on verbatim.

Options:
`

const helpTail = `
The lock name maps to a key as the npm package advisory-lock does, so Go and
Node.js programs naming the same lock exclude each other.

With --slots N the name is a semaphore's: at most N commands run under it at
once across all machines, and the others wait, served in the order they came
(every withlock using the name must give the same N). --status with --slots N
lists who holds each slot and who waits.

Database: --db, else PG_CONNECTION_STRING, else the libpq environment (PGHOST,
PGPORT, PGUSER, PGDATABASE, PGPASSWORD, PGSERVICE, ...), as psql reads it.
A password in --db is visible to every local user (ps, /proc): give it in
PG_CONNECTION_STRING or PGPASSWORD, or in a pgpass file (~/.pgpass, or the file
PGPASSFILE names), and leave it out of --db.

The command inherits stdin, stdout and stderr; withlock's own messages go to
stderr, never stdout (which --help and --status, running no command, use).
SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to withlock go to the command, and
withlock waits for it, releases the lock and exits with its status. (When
withlock runs in the foreground of a terminal, the keyboard's SIGINT and
SIGQUIT, and a hangup's SIGHUP, already reach the command, so withlock does not
send them a second time.) A signal that arrives while withlock waits for the
lock ends the wait: withlock exits 128+N without running the command.

A wait holds nothing: when its database session ends before the grant (a
terminated backend, a restart, a failover), withlock waits again on a new
session, within -w. A database still unreachable when -w runs out exits 69;
one unreachable from the start, at once.

With --every P, the command runs at most once per period P across all the
machines: withlock takes the lock without waiting (a lock held elsewhere is a
run under way: exit 0), and runs the command only if no successful run began
in the last P on the database server's clock (otherwise exit 0; -v says why),
with the run's number in WITHLOCK_RUN. A run counts only if the command exits 0
with the lock held; a failed one is retried by the next withlock --every. For
a cron entry, make P a little shorter than its interval (29m for */30). Runs
are recorded in the table advisorylock_runs (--schema, default public).

If the lock is lost while the command runs (the database session ended or the
network went silent), withlock says so on stderr, sends the command SIGTERM,
then SIGKILL after the grace period, and exits 75.
` + helpFencing + `
Exit status:
  the command's    when it ran; 128+N when it died of signal N
  0                --every: not run, as a run is under way or not due
  1 (or -E N)      -n or -w could not get the lock
  64               usage error, or a connection string that cannot be parsed
  69               the database cannot be reached, refuses the login, or
                   fails the lock request; --every: the run cannot be
                   begun, or its success recorded
  75               the lock was lost while the command ran
  126              the command cannot be run
  127              the command is not found
  128+N            withlock got signal N while waiting for the lock
`

// fencingScript is the command of the help's example of --fencing: a write
// that applies only when no newer holder of the lock has written.
const fencingScript = `echo "update report set total = 42, token = :t
          where token <= :t returning 1" |
    psql -Atq -v t="$WITHLOCK_TOKEN" | grep -q 1 ||
    { echo "stale: a newer holder has written" >&2; exit 1; }`

// helpFencing is the help's paragraph on --fencing.
const helpFencing = `
With --fencing, the command gets the lock's fencing token in WITHLOCK_TOKEN: a
number larger for each new holder of the lock, from any machine. Send it with
each write to a store that keeps the newest token it accepted and refuses
older ones: then a holder that lost the lock without knowing it (a paused
machine, a silent network) cannot overwrite a newer holder's work. Here the
store is a table with a token column, written with psql:

  withlock --fencing nightly -- sh -c '
    ` + fencingScript + `'

The tokens come from the sequence public.advisorylock_fencing, which withlock
creates on first use (CREATE on schema public needed; lacking it, withlock
says which privilege is missing, and a DBA can create it ahead of time).
`

// writeHelp writes the manual to w.
func writeHelp(w io.Writer) {
	var b strings.Builder
	b.WriteString(helpHead)
	for _, f := range flagSpecs {
		var names []string
		if f.short != 0 {
			names = append(names, "-"+string(f.short))
		}
		for _, l := range f.long {
			names = append(names, "--"+l)
		}
		left := "  " + strings.Join(names, ", ")
		if f.arg != "" {
			left += " " + f.arg
		}
		lines := strings.Split(f.help, "\n")
		const col = 28 // where the descriptions start
		if len(left) >= col {
			fmt.Fprintf(&b, "%s\n%*s%s\n", left, col, "", lines[0])
		} else {
			fmt.Fprintf(&b, "%-*s%s\n", col, left, lines[0])
		}
		for _, l := range lines[1:] {
			fmt.Fprintf(&b, "%*s%s\n", col, "", l)
		}
	}
	b.WriteString(helpTail)
	io.WriteString(w, b.String())
}
