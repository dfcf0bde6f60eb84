package advisorylockslog_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	advisorylockslog "github.com/advisorylock/advisorylock/slog"
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

// A wait that runs out is logged as a timeout, at warn, with the lock named
// by its key and its name's hash.
func ExampleNewHook() {
	ctx := context.Background()
	pool := examplePool()
	defer pool.Close()

	// The application's logger; here its records go to stdout, without
	// their time and durations, so that they read the same from run to run.
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Value.Kind() == slog.KindDuration {
				return slog.Attr{}
			}
			return a
		},
	}))
	hook := advisorylockslog.NewHook(logger,
		advisorylockslog.WithWaitThreshold(time.Second),
		advisorylockslog.WithHoldThreshold(time.Minute))

	// Another process holds the lock (here, a pool of its own).
	other := examplePool()
	defer other.Close()
	held, err := advisorylock.New(other, "test-lock").Lock(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer held.Unlock(ctx)

	m := advisorylock.New(pool, "test-lock",
		advisorylock.WithTimeout(100*time.Millisecond),
		advisorylock.WithHooks(hook))
	_, err = advisorylock.WithLock(ctx, m, func(ctx context.Context) (int, error) { return 0, nil })
	fmt.Println("WithLock:", err != nil)
	// Output:
	// level=WARN msg="advisorylock: timeout" lock.key=(-107789403,-1898803861) lock.name_hash=a54393f96b8dd28e lock.mode=exclusive lock.scope=session err="advisorylock: lock key (-107789403,-1898803861): context deadline exceeded: ERROR: canceling statement due to lock timeout (SQLSTATE 55P03)"
	// WithLock: true
}
