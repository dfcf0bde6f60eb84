package advisorylock_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
)

// The examples connect to the database named by DATABASE_URL; the test
// binary points it at its own throwaway server.
func examplePool() *pgxpool.Pool {
	pool, err := pgxpool.New(context.Background(), os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	return pool
}

func ExampleWithLock() {
	ctx := context.Background()
	pool := examplePool()
	defer pool.Close()

	// Only one process of the fleet sends the nightly report.
	m := advisorylock.New(pool, "nightly-report")
	sent, err := advisorylock.WithLock(ctx, m, func(ctx context.Context) (int, error) {
		// ... send the report; ctx is cancelled if the lock is lost.
		return 42, nil
	})
	fmt.Println(sent, err)
	// Output: 42 <nil>
}

func ExampleMutex_TryLock() {
	ctx := context.Background()
	pool := examplePool()
	defer pool.Close()

	m := advisorylock.New(pool, "cron:cleanup")
	first, err := m.TryLock(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer first.Unlock(ctx)

	// A second run finds the job already running and skips it.
	_, err = m.TryLock(ctx)
	fmt.Println(errors.Is(err, advisorylock.ErrLocked))
	// Output: true
}

func ExampleWithTimeout() {
	ctx := context.Background()
	pool := examplePool()
	defer pool.Close()

	holder, err := advisorylock.New(pool, "migrations").Lock(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer holder.Unlock(ctx)

	// Wait at most 100ms; the server enforces the bound, and the connection
	// survives the timeout.
	m := advisorylock.New(pool, "migrations", advisorylock.WithTimeout(100*time.Millisecond))
	_, err = m.Lock(ctx)
	fmt.Println(errors.Is(err, context.DeadlineExceeded))
	// Output: true
}

func ExampleShared() {
	ctx := context.Background()
	pool := examplePool()
	defer pool.Close()

	// Readers share the lock; a writer excludes them all.
	reader := advisorylock.New(pool, "catalog", advisorylock.Shared())
	r1, err := reader.Lock(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer r1.Unlock(ctx)
	r2, err := reader.TryLock(ctx)
	fmt.Println("second reader:", err)
	defer r2.Unlock(ctx)

	_, err = advisorylock.New(pool, "catalog").TryLock(ctx)
	fmt.Println("writer locked out:", errors.Is(err, advisorylock.ErrLocked))
	// Output:
	// second reader: <nil>
	// writer locked out: true
}

func ExampleTransactionScope() {
	ctx := context.Background()
	pool := examplePool()
	defer pool.Close()
	if _, err := pool.Exec(ctx, "create table if not exists example_migrations (version int primary key)"); err != nil {
		log.Fatal(err)
	}
	defer pool.Exec(ctx, "drop table example_migrations")

	// The migration's writes and the lock share one transaction: they commit
	// together, or roll back together if fn fails or panics.
	m := advisorylock.New(pool, "schema", advisorylock.TransactionScope())
	_, err := advisorylock.WithLock(ctx, m, func(ctx context.Context) (struct{}, error) {
		l, _ := advisorylock.LockFromContext(ctx)
		tx := l.Tx()
		_, err := tx.Exec(ctx, "insert into example_migrations values (1) on conflict do nothing")
		return struct{}{}, err
	})
	if err != nil {
		log.Fatal(err)
	}
	var n int
	if err := pool.QueryRow(ctx, "select count(*) from example_migrations").Scan(&n); err != nil {
		log.Fatal(err)
	}
	fmt.Println("migrations applied:", n)
	// Output: migrations applied: 1
}

func ExampleLock_Done() {
	ctx := context.Background()
	pool := examplePool()
	defer pool.Close()

	l, err := advisorylock.New(pool, "leader").Lock(ctx)
	if err != nil {
		log.Fatal(err)
	}
	// Lead until the lock is lost (Done closes, Err says why) or work ends.
	work := time.After(50 * time.Millisecond)
	select {
	case <-l.Done():
		fmt.Println("lost:", l.Err())
	case <-work:
		fmt.Println("done leading:", l.Unlock(ctx))
	}
	// Output: done leading: <nil>
}

func ExampleMutex_Holders() {
	ctx := context.Background()
	pool := examplePool()
	defer pool.Close()

	m := advisorylock.New(pool, "report")
	l, err := m.Lock(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer l.Unlock(ctx)

	holders, err := m.Holders(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, h := range holders {
		fmt.Println(h.Mode, "granted:", h.Granted)
	}
	// Output: exclusive granted: true
}
