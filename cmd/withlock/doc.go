// Withlock runs a command while holding a PostgreSQL advisory lock, so that
// only one such command runs at a time across every machine that shares the
// database. It is flock(1) with a database in place of a file, and the Go
// successor of the npm package advisory-lock's withlock:
//
//	withlock dbmigration -- npm run knex migrate:latest
//
// # Usage
//
//	withlock [options] <lock-name> [options] -- <command> [args...]
//	withlock [options] --key K -- <command> [args...]
//	withlock --status [options] (<lock-name> | --key K) [options]
//
// Options go before or after the lock name, in any order, up to "--"
// (withlock mylock --db URL -- cmd, withlock --db URL mylock -- cmd);
// everything after "--" is the command, passed on verbatim. Short options may
// be clustered (-nv) and take their value attached or separate (-w5, -w 5);
// long ones take it after "=" or separate (--timeout=5, --timeout 5). A value
// may start with "-", but "--" is never a value.
//
// # Options
//
//	-n, --nonblock, --nb      fail at once, with the conflict exit code, if the
//	                          lock is held
//	-w, --timeout, --wait D   give up, with the conflict exit code, after
//	                          waiting D for the lock: seconds as in flock (1.5)
//	                          or a Go duration (500ms); 0 is -n. The bound is
//	                          enforced by the server (lock_timeout).
//	-s, --shared              take the lock in shared mode: shared holders run
//	                          together, and exclude exclusive ones
//	-x, -e, --exclusive       take the lock in exclusive mode (the default)
//	-E, --conflict-exit-code N
//	                          exit status when -n or -w cannot get the lock
//	                          (0 to 255, default 1)
//	-v, --verbose             say on stderr when waiting (and for whom),
//	                          acquired (and after how long), released
//	--key K                   lock the raw key K instead of a name: a bigint
//	                          (42) or an int4 pair (1,2), as pg_advisory_lock
//	                          takes them, to share a lock with other tools
//	--db URL                  the database, as a URL or keyword/value string
//	--slots N                 a semaphore of N slots (1 to 1000) instead of a
//	                          lock: at most N commands run under the name at
//	                          once (see Semaphores)
//	--status                  print the holders and waiters of the lock, with
//	                          their backend pid, and the last run of --every
//	                          (with --every, when the next is due), and exit
//	                          0; takes no command
//	--grace D                 when the lock is lost, time between SIGTERM and
//	                          SIGKILL to the command (default 10s)
//	--keepalive D             probe the held lock's connection every D, so a
//	                          silent network is noticed within 2×D (default
//	                          3s; 0 turns the probe off)
//	--every P                 run the command only if no successful run began
//	                          in the last P (a Go duration, 30m, or seconds);
//	                          otherwise exit 0 without running it (-v says
//	                          why). See "Periodic runs" below.
//	--schema S                the schema of the runs table that --every and
//	                          --status use (default public)
//	--fencing                 give the command the lock's fencing token in
//	                          WITHLOCK_TOKEN (see Fencing tokens)
//	-h, --help                print the help and exit 0
//
// # Lock names and keys
//
// A lock name maps to a key exactly as the npm package advisory-lock 2.x maps
// it (the library's KeyFromName): Go programs, Node.js programs and withlock
// naming the same lock exclude each other. --key names the key itself.
//
// # Semaphores
//
// With --slots N, the name is a semaphore's (package semaphore): at most N
// commands run under it at once, across every machine that shares the
// database, and the others wait for a slot, served in the order they came:
//
//	withlock --slots 3 partner-api -- ./sync.sh
//
// Every withlock using the name must give the same N (one that gives more
// uses the extra slots too). -n fails at once when every slot is held or
// others wait; -w bounds the wait; -s, --key, --every and --fencing do not go
// with --slots. A waiting withlock waits in the server, woken when a slot is
// released; a slot freed by a withlock that died is found within a second.
// --status --slots N lists the holder of each slot and the waiters, in the
// order they will be served.
//
// # The database
//
// The connection settings come from --db, else from the environment variable
// PG_CONNECTION_STRING, else from the libpq environment alone (PGHOST, PGPORT,
// PGUSER, PGDATABASE, PGPASSWORD, PGSERVICE, PGSSLMODE, ...), as psql reads
// it. As with libpq, the PG* variables also fill in whatever a connection
// string leaves out. withlock uses at most two connections (three with
// --slots), named "withlock" (application_name) unless the settings name
// them. No message
// of withlock ever shows a password or a connection string.
//
// A password in --db is visible to every local user, in ps and /proc, for as
// long as withlock runs: give it in PG_CONNECTION_STRING or PGPASSWORD (a
// process's environment is readable by its user alone), or in a pgpass file
// (~/.pgpass, or the file PGPASSFILE names, as with libpq), and leave it out
// of --db.
//
// # The command
//
// The command inherits stdin, stdout and stderr. withlock's own messages go
// to stderr, so that stdout carries the command's output alone (--help and
// --status, which run no command, print on stdout). A command that is not
// found, or cannot be run, never takes the lock.
//
// # Signals
//
// SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to withlock go to the command (its
// process, not its process group: a shell command should exec its program or
// pass signals on itself). withlock waits for the command, then releases the
// lock, then exits with the command's status. The command stays in withlock's
// process group, so job control works on a terminal; when withlock runs in the
// foreground of a terminal, the keyboard's SIGINT and SIGQUIT and a hangup's
// SIGHUP reach the command directly, and withlock does not send them a second
// time.
//
// A signal that arrives while withlock connects or waits for the lock ends
// the wait: withlock exits 128+N without running the command.
//
// A wait holds nothing: when its database session ends before the grant (a
// terminated backend, a restart, a failover, a network gone silent), withlock
// waits again on a new session, within -w. A database still unreachable when
// -w runs out exits 69; one unreachable from the start, at once.
//
// If withlock itself is killed outright (SIGKILL), its session ends and the
// server releases the lock; on Linux the command is then killed too, so it
// never runs unprotected.
//
// # A lost lock
//
// A held lock is watched: withlock notices at once when the server ends its
// session (pg_terminate_backend, a restart) and within twice --keepalive when
// the network goes silent. Then it says so on stderr, sends the command
// SIGTERM, sends SIGKILL if the command is still running after --grace, and
// exits 75. Another session may hold the lock from the moment it was lost.
//
// # Fencing tokens
//
// With --fencing, the command gets the lock's fencing token in the
// environment variable WITHLOCK_TOKEN: a number larger for each new holder of
// the lock, from any machine (the library's WithFencing). A store that keeps
// the newest token it has accepted, and refuses older ones, cannot then be
// written by a holder that lost the lock without knowing it (a paused
// machine, a silent network) after a newer holder has written. With a table
// and psql:
//
//	withlock --fencing nightly -- sh -c '
//	  echo "update report set total = 42, token = :t
//	        where token <= :t returning 1" |
//	  psql -Atq -v t="$WITHLOCK_TOKEN" | grep -q 1 ||
//	  { echo "stale: a newer holder has written" >&2; exit 1; }'
//
// The tokens come from the sequence public.advisorylock_fencing, which
// withlock creates on first use; that needs CREATE on schema public. A role
// without it gets exit status 69 and a message naming the missing privilege;
// a DBA can create the sequence ahead of time (see the library's
// documentation).
//
// # Periodic runs
//
// With --every P, withlock runs the command at most once per period P across
// every machine that shares the database, for a cron entry that every replica
// of a service carries:
//
//	*/30 * * * * withlock --every 29m slack-stats -- ./post-stats
//
// It takes the lock without waiting; if another withlock (or a program using
// package periodic) holds it, a run is under way, and withlock exits 0 at
// once. Under the lock it checks, on the database server's clock, when the
// last successful run began: within P, it exits 0 without running the
// command; otherwise it records the start of a run, runs the command with
// the run's number in WITHLOCK_RUN (1, 2, 3, ...: a fencing token), and
// records how it ended before releasing the lock. A run counts only when the
// command exits 0 with the lock held throughout: one that fails, is killed,
// loses the lock or whose withlock dies is retried by the next withlock
// --every, on any machine. -v says why a run was skipped, and how one was
// recorded. With -n, a lock held elsewhere exits with the conflict status
// instead of 0; with -w D, withlock waits up to D for a run under way to end,
// then checks. --every needs a lock name (not --key) and exclusive mode.
//
// The period runs from the start of one successful run to the start of the
// next, on the server's clock, so that the machines' own clocks do not
// matter. Make it a little shorter than the cron interval (29m for every 30
// minutes): an entry that fires a few milliseconds early would otherwise find
// the period not quite over, and skip it.
//
// Runs are recorded in the table advisorylock_runs of the schema --schema
// names (default public), which the first run creates: it needs CREATE on
// the schema then, and SELECT, INSERT and UPDATE on the table always. A DBA
// can create it ahead of time (see package periodic). --status shows the
// last run and the last successful one; with --every, when the next is due.
//
// # Exit status
//
//	the command's  when it ran; 128+N when it died of signal N
//	0              --every: not run, a run is under way or not due
//	1, or -E N     -n or -w could not get the lock
//	64             usage error, or a connection string that cannot be parsed
//	69             the database cannot be reached (at first, or again by the
//	               end of -w after a wait lost its session), refuses the login
//	               or the database name, or fails the lock request (a hot
//	               standby); --every: the run cannot be begun or its success
//	               recorded
//	75             the lock was lost while the command ran
//	126            the command cannot be run
//	127            the command is not found
//	128+N          withlock got signal N while connecting or waiting
package main
