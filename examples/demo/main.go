// Command demo shows advisorylock's three use cases with real processes, on
// a PostgreSQL of its own, in about ten seconds. Run it from the module's
// root with
//
//	go run ./examples/demo
//
// It tells three stories:
//
//  1. A clock (a cron process that must never run twice) is started three
//     times: exactly one ticks. It is killed with SIGKILL, a crash, and
//     another takes over at once: the server released the lock when the dead
//     process's connection closed.
//  2. A migration at start-up: five replicas start at once; exactly one
//     migrates, in a transaction-scoped lock, and the others wait for it and
//     then find the schema up to date.
//  3. Leader election: the leader posts the nightly report; the demo cuts its
//     database connection (pg_terminate_backend); the leader notices that it
//     lost the lock and steps down, and another candidate is elected and
//     posts.
//
// The story is printed on stdout as one timeline: seconds since the start,
// who speaks (the demo itself, or a worker), what happened.
//
// It uses the database in PG_CONNECTION_STRING when that is set (it creates
// and drops two tables with names unique to the run there, and uses lock
// names unique to the run). Otherwise it starts a throwaway PostgreSQL the
// way the module's tests do, from the installed server binaries or else in a
// Docker container, and stops it at the end. Every worker is stopped before
// the demo exits, also on failure and on Ctrl-C (exit status 130); a worker
// whose demo vanished stops by itself.
//
// The workers are this program run again with a hidden first argument,
// "worker", a role and a name. Their code (workers.go) is the part to read to
// see the library used.
package main

import "os"

func main() {
	if len(os.Args) > 1 && os.Args[1] == workerArg {
		os.Exit(runWorker(os.Args[2:]))
	}
	os.Exit(runDemo())
}
