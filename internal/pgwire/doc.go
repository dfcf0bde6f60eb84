// Package pgwire is a PostgreSQL server session shared by many goroutines
// through pipelining, for the library's lock traffic: small autocommit
// statements such as
//
//	select pg_catalog.pg_try_advisory_lock(1,2)
//	select 1 where pg_catalog.pg_advisory_unlock(1,2)
//
// issued concurrently, each needing one round trip and a lock session that
// notices at once when the server ends it.
//
// # How it works
//
// Connect opens the session with pgconn (so TLS, authentication, DialFunc
// and RuntimeParams of the caller's config apply), then takes the
// connection over and speaks the simple query protocol itself: each query is
// one Query message, answered by its rows, a command tag or an error, and
// ReadyForQuery. A query is written as soon as it is issued, without waiting
// for the answers to earlier ones; the session keeps the queries written and
// not yet answered in a queue whose order is the order on the wire, and
// whoever holds the read role completes them in that order. Under
// concurrency the queries of many goroutines travel in one write and one
// round trip: a goroutine that finds another writing leaves its query to
// that writer and goes on to wait for the answer.
//
// On a plain TCP or Unix socket, a caller of Do, DoOr, DoStmt or Start that
// finds nobody reading takes the read role and reads its answer itself,
// answering the queries queued before its own on the way: the answer
// reaches it with no other goroutine woken, so an uncontended query costs
// what it costs on a connection of its own. Meanwhile the session's watcher
// goroutine waits on a duplicate of the socket's descriptor for bytes to
// arrive when nobody reads, without consuming them, and then reads them
// itself: a server that ends an idle session is noticed at once (within
// 10ms of a caller's last read). A caller that gives the role up with others'
// queries pending hands it to the watcher, which answers them and wakes
// their callers. Over TLS, whose buffered bytes the kernel cannot see, the
// watcher reads every answer and hands it over.
//
// A caller waits for its answer with Do or DoOr, or has it passed to a
// callback with Send. Callbacks (Send's done, DoOr's late) run on whichever
// goroutine reads, a caller or the watcher, in the order of the queries;
// Options.OnDead and Probe run on the watcher. They must not block, since no
// answer is read meanwhile, and must not call Close; they may call Send.
//
// # Failures
//
// A statement's error (lock_timeout, a cancel, a full lock table) is part of
// its answer, Result.Err; the session goes on. The session ends when the
// server sends a FATAL error (pg_terminate_backend, a shutdown), when the
// connection closes or fails, when the server goes silent (see
// Options.Keepalive), or on Close. Done is then closed, Err says why, every
// pending query fails with an error matching ErrClosed, as does every later
// one, at once, and Options.OnDead is called.
//
// A query whose caller gave up (Do's context) stays in the queue: the server
// runs it all the same. DoOr hands its answer to a function, so that the
// caller can undo its effect, such as a lock granted after the caller left.
// Cancel asks the server to cancel the running statement, whichever it is.
//
// # What to send
//
// Statements that run in autocommit mode and return a few rows. A query
// string may hold several statements; their rows add up in one Result. A
// failed statement inside a transaction block would make the server reject
// every later query of every goroutine until the block ends, and COPY is not
// supported (it ends the session): this is a lock session, not a general
// connection.
package pgwire
