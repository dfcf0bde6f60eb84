package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
)

// workerArg is the first argument that makes this program a worker.
const workerArg = "worker"

// The demo tells its workers what they need in the environment, which,
// unlike the command line, other users cannot read: the DSN may hold a
// password.
const (
	envDSN = "ADVISORYLOCK_DEMO_DSN"
	envT0  = "ADVISORYLOCK_DEMO_T0"
	envRun = "ADVISORYLOCK_DEMO_RUN"
)

// Roles of the workers.
const (
	roleClock     = "clock"
	roleReplica   = "replica"
	roleCandidate = "candidate"
)

// tickEvery is the clock's period.
const tickEvery = 500 * time.Millisecond

// names makes the lock and table names of one run, unique so that demos
// sharing a database never meet.
type names struct{ run string }

func (n names) lock(what string) string { return "advisorylock-demo/" + n.run + "/" + what }

// table returns the quoted name of one of the run's tables.
func (n names) table(what string) string {
	return pgx.Identifier{"advisorylock_demo_" + n.run + "_" + what}.Sanitize()
}

// runWorker is a worker process: args are its role and name. It returns the
// exit status.
func runWorker(args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "demo worker: want a role and a name")
		return 2
	}
	role, name := args[0], args[1]
	t0, err := decodeT0(os.Getenv(envT0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo worker:", err)
		return 2
	}
	tl := timeline{t0: t0, label: name}
	n := names{run: os.Getenv(envRun)}

	// SIGTERM from the demo, or Ctrl-C on the terminal, stops the worker
	// cleanly. So does the end of stdin: the demo holds it open, so EOF means
	// the demo is gone, and a worker must not outlive it.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()

	cfg, err := pgxpool.ParseConfig(os.Getenv(envDSN))
	if err != nil {
		tl.say("error: %v", err)
		return 1
	}
	// The demo finds who holds a lock by this name (Holders).
	cfg.ConnConfig.RuntimeParams["application_name"] = name
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		tl.say("error: %v", err)
		return 1
	}
	defer pool.Close()

	switch role {
	case roleClock:
		err = clock(ctx, tl, pool, n)
	case roleReplica:
		err = replica(ctx, tl, pool, n)
	case roleCandidate:
		err = candidate(ctx, tl, pool, n)
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		tl.say("error: %v", err)
		return 1
	}
	return 0
}

// clock is a cron-like process that must never run twice: it ticks only
// while it holds the clock lock, and waits for it otherwise. Started three
// times, exactly one ticks; if that one dies, the server releases its lock
// and the next waiter is granted it.
func clock(ctx context.Context, tl timeline, pool *pgxpool.Pool, n names) error {
	m := advisorylock.New(pool, n.lock("clock"))
	tl.say("started; waiting for the clock lock")
	l, err := m.Lock(ctx) // waits in the server: no polling
	if err != nil {
		if ctx.Err() != nil {
			tl.say("stopped while waiting")
			return nil
		}
		return err
	}
	tl.say("became the clock")
	t := time.NewTicker(tickEvery)
	defer t.Stop()
	ticks := 0
	for {
		select {
		case <-t.C:
			ticks++
			tl.say("tick %d", ticks)
		case <-l.Done():
			// Lost: another clock may be ticking already. Stop at once.
			tl.say("lost the clock lock (%s): stopping", lossReason(l.Err()))
			return nil
		case <-ctx.Done():
			err := unlock(l)
			tl.say("stopped after %d ticks; released the clock lock", ticks)
			return err
		}
	}
}

// replica is a service replica that migrates the schema at start-up, if no
// other replica has. The migration runs under a transaction-scoped lock, in
// the lock's own transaction: the schema change commits together with the
// release, so the replica that gets the lock next sees the schema migrated.
func replica(ctx context.Context, tl timeline, pool *pgxpool.Pool, n names) error {
	m := advisorylock.New(pool, n.lock("migrate"), advisorylock.TransactionScope())
	tl.say("started; taking the migration lock")
	start := time.Now()
	_, err := advisorylock.WithLock(ctx, m, func(ctx context.Context) (struct{}, error) {
		l, _ := advisorylock.LockFromContext(ctx)
		tx := l.Tx()
		waited := time.Since(start).Seconds()
		var migrated bool
		if err := tx.QueryRow(ctx, "select to_regclass($1) is not null", n.table("schema")).Scan(&migrated); err != nil {
			return struct{}{}, err
		}
		if migrated {
			var by string
			err := tx.QueryRow(ctx, "select migrated_by from "+n.table("schema")+" where version = 1").Scan(&by)
			if err == nil {
				tl.say("got the lock after %.3fs: schema already at version 1 (by %s); nothing to do", waited, by)
			}
			return struct{}{}, err
		}
		tl.say("got the lock after %.3fs: schema at version 0; migrating", waited)
		return struct{}{}, migrate(ctx, tx, tl, n)
	})
	if err != nil {
		if ctx.Err() != nil {
			tl.say("stopped")
			return nil
		}
		return err
	}
	tl.say("serving")
	return nil
}

// migrate brings the schema to version 1, in tx: a table recording the
// version, and the reports table the leader of the third act writes to.
func migrate(ctx context.Context, tx pgx.Tx, tl timeline, n names) error {
	for _, stmt := range []string{
		"create table " + n.table("schema") + " (version int primary key, migrated_by text not null, migrated_at timestamptz not null default now())",
		"create table " + n.table("reports") + " (id serial primary key, posted_by text not null, posted_at timestamptz not null default now())",
		"select pg_sleep(1.5)", // the slow part of a real migration
	} {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(ctx, "insert into "+n.table("schema")+" (version, migrated_by) values (1, $1)", tl.label); err != nil {
		return err
	}
	tl.say("migrated to version 1; committing, which releases the lock")
	return nil
}

// candidate stands for leader: it waits for the leader lock, leads while it
// holds it (posting the nightly report once per term), and stands again when
// it loses it. Losing it means another candidate may already lead: the lock's
// Done channel says so within moments of the server ending the session.
func candidate(ctx context.Context, tl timeline, pool *pgxpool.Pool, n names) error {
	m := advisorylock.New(pool, n.lock("leader"))
	tl.say("standing for leader")
	for {
		l, err := m.Lock(ctx)
		if err != nil {
			if ctx.Err() != nil {
				tl.say("stopped while standing")
				return nil
			}
			return err
		}
		tl.say("elected leader")
		var id int
		if err := pool.QueryRow(ctx, "insert into "+n.table("reports")+" (posted_by) values ($1) returning id",
			tl.label).Scan(&id); err != nil {
			_ = unlock(l)
			return err
		}
		tl.say("posted the nightly report (#%d)", id)
		select {
		case <-l.Done():
			tl.say("lost leadership (%s): stepping down, standing again", lossReason(l.Err()))
		case <-ctx.Done():
			err := unlock(l)
			tl.say("stopped; stepped down")
			return err
		}
	}
}

// unlock releases l on a context of its own: the worker's is cancelled by
// the time it stops.
func unlock(l *advisorylock.Lock) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return l.Unlock(ctx)
}

// lossReason says briefly why a lock was lost: the server's message when
// it sent one.
func lossReason(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Message
	}
	return err.Error()
}
