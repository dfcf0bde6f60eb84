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
//	--status                  print the holders and waiters of the lock, with
//	                          their backend pid, and exit 0; takes no command
//	--grace D                 when the lock is lost, time between SIGTERM and
//	                          SIGKILL to the command (default 10s)
//	--keepalive D             probe the held lock's connection every D, so a
//	                          silent network is noticed within 2×D (default
//	                          3s; 0 turns the probe off)
//	-h, --help                print the help and exit 0
//
// # Lock names and keys
//
// A lock name maps to a key exactly as the npm package advisory-lock 2.x maps
// it (the library's KeyFromName): Go programs, Node.js programs and withlock
// naming the same lock exclude each other. --key names the key itself.
//
// # The database
//
// The connection settings come from --db, else from the environment variable
// PG_CONNECTION_STRING, else from the libpq environment alone (PGHOST, PGPORT,
// PGUSER, PGDATABASE, PGPASSWORD, PGSERVICE, PGSSLMODE, ...), as psql reads
// it. As with libpq, the PG* variables also fill in whatever a connection
// string leaves out. withlock uses at most two connections, named
// "withlock" (application_name) unless the settings name them. No message
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
// # Exit status
//
//	the command's  when it ran; 128+N when it died of signal N
//	1, or -E N     -n or -w could not get the lock
//	64             usage error, or a connection string that cannot be parsed
//	69             the database cannot be reached (at first, or again by the
//	               end of -w after a wait lost its session), refuses the login
//	               or the database name, or fails the lock request (a hot
//	               standby)
//	75             the lock was lost while the command ran
//	126            the command cannot be run
//	127            the command is not found
//	128+N          withlock got signal N while connecting or waiting
package main
