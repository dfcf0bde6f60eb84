// Package pgtest provides PostgreSQL servers and fault injection for the
// module's tests.
//
// A test package wires it in through TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// and each test that needs a database asks for one of its own on the
// package's server:
//
//	dsn := pgtest.Database(t) // pgtest.Require(t).CreateDatabase(t), checked
//	pool := pgtest.NewPool(t, dsn)
//
// # Where servers come from
//
// Start finds a server in one of three ways, in this order:
//
//   - env: the DSN in ADVISORYLOCK_TEST_DSN, used as it is.
//   - local: a throwaway cluster made by initdb in a temporary directory and
//     run by postgres as a child of the test binary. The binaries are taken
//     from ADVISORYLOCK_TEST_PGBIN, else the newest
//     /usr/lib/postgresql/*/bin, else pg_config --bindir, else PATH. As root,
//     they run as the postgres OS user, since they refuse to run as root.
//   - docker: a postgres:15 container, when a Docker engine answers a ping.
//
// Servers started by the harness listen on 127.0.0.1 only, with fsync off,
// and require a random password from TCP clients (SCRAM), so tests can check
// that the password never leaks into errors or logs.
//
// A local server cannot outlive the test binary: it gets SIGQUIT (an
// immediate shutdown) when the binary dies, even by SIGKILL. Its temporary
// directory, named pgtest-*, is then left behind, and removed by the next
// Start of a local server.
//
// # Missing servers
//
// When no server can be had, tests calling Require skip, unless Required
// reports that the run must have one (CI=true or
// ADVISORYLOCK_TEST_REQUIRE_DB=1); then the run fails. Unavailable does the
// same for anything else a test needs and may not find (PgBouncer, a
// pseudo-terminal): a required run skips nothing.
//
// # Poolers, pools and locks
//
// StartPgBouncer (and PgBouncer, for transaction mode) runs PgBouncer in
// front of the server for one database. NewPool gives a test a pool that is
// checked when the test ends: nothing still acquired, no pooled connection
// holding an advisory lock. Database checks that no session holds an advisory
// lock in the test's database when it ends. AwaitWaiters, AwaitHolders and
// AwaitAdvisoryLocks wait for pg_locks to show a number of advisory locks in
// one database; AdvisoryLockPIDs lists their sessions, and Terminate and
// TerminateHolder end sessions.
//
// # Secrets
//
// SecretRole makes a role whose password is easy to find in any text it leaks
// into; WithCredentials and ClosedPort make connection strings that work, are
// refused or are denied; ErrorChain lists what an error wraps, and
// AssertNoSecrets searches texts for the password.
//
// # Fault injection
//
// Proxy is a loopback TCP forwarder that can freeze (a silent network for the
// client: the proxy's kernel still answers the server) and cut (abrupt
// resets) the connections passing through it; Server.Proxy puts one in front
// of the server, and Server.ProxiedPool a pool behind it. Partition silences
// one session's connection for both ends, by dropping its packets with
// iptables (root; Unavailable otherwise). Restart restarts a server the
// harness started, StartStandby starts a hot standby of it, and Promote makes
// the standby the primary (a failover).
package pgtest
