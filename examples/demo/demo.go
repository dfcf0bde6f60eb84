package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
)

// awaitTimeout bounds every wait of the demo for something to happen.
const awaitTimeout = 20 * time.Second

// demo is the orchestrating process.
type demo struct {
	t0    time.Time
	tl    timeline
	n     names
	pool  *pgxpool.Pool
	fleet *fleet
}

// runDemo runs the demo and returns its exit status: 0, 1 on failure, or
// 128+N when signal N (Ctrl-C) cut it short. Workers and server are stopped
// on every path.
func runDemo() int {
	// Wall-clock time, without the monotonic reading: the workers measure
	// from it too.
	t0 := time.Now().Round(0)
	d := &demo{t0: t0, tl: timeline{t0: t0, label: "demo"}, n: names{run: newRunID()}}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := d.run(ctx)
	switch {
	case err == nil:
		d.tl.say("done in %.1fs: every worker has exited, and the server is stopped", time.Since(t0).Seconds())
		return 0
	case ctx.Err() != nil:
		fmt.Fprintln(os.Stderr, "demo: interrupted; every worker has exited, and the server is stopped")
		return 128 + int(syscall.SIGINT)
	default:
		fmt.Fprintln(os.Stderr, "demo: failed:", err)
		return 1
	}
}

// run provisions the database, plays the three acts and cleans up: workers,
// tables, pool and server, in that order, whatever happened.
func (d *demo) run(ctx context.Context) (err error) {
	d.tl.say("advisorylock demo (run %s): three use cases, with real processes", d.n.run)
	dsn, stopServer, err := d.database(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if serr := stopServer(); serr != nil {
			err = errors.Join(err, fmt.Errorf("stopping the server: %w", serr))
		}
	}()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return err
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "demo"
	d.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer d.pool.Close()
	defer d.dropTables()

	self, err := os.Executable()
	if err != nil {
		return err
	}
	d.fleet = &fleet{self: self, env: append(os.Environ(),
		envDSN+"="+dsn, envT0+"="+encodeT0(d.t0), envRun+"="+d.n.run)}
	defer d.fleet.stopAll()

	for _, act := range []func(context.Context) error{d.clocks, d.migration, d.election} {
		if err := act(ctx); err != nil {
			return err
		}
	}
	return nil
}

// clocks is act 1: a clock started three times; exactly one ticks; it is
// killed, and another takes over.
func (d *demo) clocks(ctx context.Context) error {
	d.tl.section("1. A clock process, started three times: exactly one ticks")
	names, err := d.startWorkers(roleClock, "clock", 3)
	if err != nil {
		return err
	}
	m := advisorylock.New(d.pool, d.n.lock("clock"))
	first, err := d.awaitHolder(ctx, m, "", 2, nil)
	if err != nil {
		return err
	}
	d.tl.say("%s holds the clock lock; the other two wait for it in PostgreSQL", first.ApplicationName)
	if err := pause(ctx, 4*tickEvery); err != nil {
		return err
	}
	d.tl.say("kill -9 %s: the ticking clock crashes, without a chance to unlock", first.ApplicationName)
	d.fleet.find(first.ApplicationName).kill()
	second, err := d.awaitHolder(ctx, m, first.ApplicationName, 1, nil)
	if err != nil {
		return err
	}
	d.tl.say("%s holds the clock lock now: the server released it when %s's connection closed",
		second.ApplicationName, first.ApplicationName)
	if err := pause(ctx, 4*tickEvery); err != nil {
		return err
	}
	d.tl.say("stopping the clocks")
	return d.stopWorkers(names, second.ApplicationName)
}

// migration is act 2: five replicas start at once; exactly one migrates.
func (d *demo) migration(ctx context.Context) error {
	d.tl.section("2. A migration at start-up: five replicas start at once, exactly one migrates")
	names, err := d.startWorkers(roleReplica, "replica", 5)
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := d.fleet.find(name).wait(); err != nil {
			return err
		}
	}
	var migrations int
	var by string
	if err := d.pool.QueryRow(ctx, "select count(*), min(migrated_by) from "+d.n.table("schema")).Scan(&migrations, &by); err != nil {
		return err
	}
	d.tl.say("all 5 replicas serve; %d migration ran (by %s); the others waited for it, then found it done", migrations, by)
	return nil
}

// election is act 3: the leader posts the report; its connection is cut; it
// notices, and another candidate is elected and posts.
func (d *demo) election(ctx context.Context) error {
	d.tl.section("3. Leader election: the leader posts the report; its connection is cut; another is elected")
	names, err := d.startWorkers(roleCandidate, "candidate", 3)
	if err != nil {
		return err
	}
	m := advisorylock.New(d.pool, d.n.lock("leader"))
	leader, err := d.awaitHolder(ctx, m, "", 2, d.reportsPosted(1))
	if err != nil {
		return err
	}
	if err := pause(ctx, time.Second); err != nil {
		return err
	}
	d.tl.say("%s leads (backend pid %d); cutting its connection: pg_terminate_backend(%d)",
		leader.ApplicationName, leader.PID, leader.PID)
	var ok bool
	if err := d.pool.QueryRow(ctx, "select pg_terminate_backend($1)", leader.PID).Scan(&ok); err != nil || !ok {
		return fmt.Errorf("pg_terminate_backend(%d) = %v, %v", leader.PID, ok, err)
	}
	// Two waiters again: the old leader noticed, stepped down and stands again.
	next, err := d.awaitHolder(ctx, m, leader.ApplicationName, 2, d.reportsPosted(2))
	if err != nil {
		return err
	}
	d.tl.say("%s leads now; %s stands again", next.ApplicationName, leader.ApplicationName)
	if err := pause(ctx, time.Second); err != nil {
		return err
	}
	d.tl.say("stopping the candidates")
	if err := d.stopWorkers(names, next.ApplicationName); err != nil {
		return err
	}
	rows, err := d.pool.Query(ctx, "select format('#%s by %s', id, posted_by) from "+d.n.table("reports")+" order by id")
	if err != nil {
		return err
	}
	var reports []string
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			return err
		}
		reports = append(reports, r)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	d.tl.say("reports posted: %s", strings.Join(reports, ", "))
	return nil
}

// startWorkers starts n workers of role, named prefix-1 to prefix-n, at
// once, and returns their names.
func (d *demo) startWorkers(role, prefix string, n int) ([]string, error) {
	var names []string
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("%s-%d", prefix, i)
		if _, err := d.fleet.start(role, name); err != nil {
			return nil, err
		}
		names = append(names, name)
	}
	d.tl.say("started %s", strings.Join(names, ", "))
	return names, nil
}

// stopWorkers stops the named workers still running, the holder of the lock
// last, so that no waiter is granted the lock on the way out.
func (d *demo) stopWorkers(names []string, holder string) error {
	order := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == holder })
	var errs []error
	for _, name := range append(order, holder) {
		w := d.fleet.find(name)
		select {
		case <-w.done: // killed before
		default:
			errs = append(errs, w.stop())
		}
	}
	return errors.Join(errs...)
}

// awaitHolder waits until m's lock has one holder, other than the worker
// named not, and waiters waiting, and until cond, if not nil, holds. It
// returns the holder.
func (d *demo) awaitHolder(ctx context.Context, m *advisorylock.Mutex, not string, waiters int, cond func(context.Context) (bool, error)) (advisorylock.Holder, error) {
	ctx, cancel := context.WithTimeout(ctx, awaitTimeout)
	defer cancel()
	for {
		hs, err := m.Holders(ctx)
		if err != nil {
			return advisorylock.Holder{}, err
		}
		var held []advisorylock.Holder
		for _, h := range hs {
			if h.Granted {
				held = append(held, h)
			}
		}
		if len(held) == 1 && held[0].ApplicationName != not && len(hs)-1 == waiters {
			ok := cond == nil
			if !ok {
				if ok, err = cond(ctx); err != nil {
					return advisorylock.Holder{}, err
				}
			}
			if ok {
				return held[0], nil
			}
		}
		if err := pause(ctx, 10*time.Millisecond); err != nil {
			return advisorylock.Holder{}, fmt.Errorf("waiting for a holder of %s (other than %q) and %d waiters: %w", m, not, waiters, err)
		}
	}
}

// reportsPosted is a condition for awaitHolder: n reports posted.
func (d *demo) reportsPosted(n int) func(context.Context) (bool, error) {
	return func(ctx context.Context) (bool, error) {
		var got int
		err := d.pool.QueryRow(ctx, "select count(*) from "+d.n.table("reports")).Scan(&got)
		return got >= n, err
	}
}

// dropTables drops the tables the migration made, for a demo run in a
// database that stays.
func (d *demo) dropTables() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := d.pool.Exec(ctx, "drop table if exists "+d.n.table("schema")+", "+d.n.table("reports")); err != nil {
		fmt.Fprintln(os.Stderr, "demo: dropping the demo's tables:", err)
	}
}

// pause waits for d, or until ctx is done.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// newRunID names a run: lock and table names carry it.
func newRunID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b) // never fails
	return hex.EncodeToString(b)
}
