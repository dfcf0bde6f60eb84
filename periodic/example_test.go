package periodic_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock/periodic"
)

// examplePool connects to the database in DATABASE_URL, as a program would.
// It forgets the runs of earlier runs of the examples, so that each starts
// afresh (the runs table may not exist yet).
func examplePool() *pgxpool.Pool {
	pool, err := pgxpool.New(context.Background(), os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	_, err = pool.Exec(context.Background(), "delete from public.advisorylock_runs where name like 'example-%'")
	if err != nil && !strings.Contains(err.Error(), "42P01") {
		log.Fatal(err)
	}
	return pool
}

// postStats stands for the work: here it only says which run it is.
func postStats(_ context.Context, token int64) error {
	fmt.Println("posting the statistics of run", token)
	return nil
}

// Every replica of a service runs the same code: across all of them, the
// statistics are posted once every 30 minutes, and a post that fails is
// retried by whichever replica ticks next.
func ExampleJob_Tick() {
	pool := examplePool()
	defer pool.Close()

	// In a service: signal.NotifyContext(ctx, syscall.SIGTERM).
	ctx, shutdown := context.WithCancel(context.Background())
	job := periodic.New(pool, "example-slack-stats", 30*time.Minute)
	err := job.Tick(ctx, time.Minute, func(ctx context.Context, run periodic.Run) error {
		defer shutdown() // here, one run and the example ends
		return postStats(ctx, run.Token)
	})
	fmt.Println(err)
	// Output:
	// posting the statistics of run 1
	// <nil>
}

func ExampleJob_Run() {
	ctx := context.Background()
	pool := examplePool()
	defer pool.Close()

	job := periodic.New(pool, "example-nightly", 24*time.Hour)
	for range 2 {
		ran, err := job.Run(ctx, func(ctx context.Context, run periodic.Run) error {
			return postStats(ctx, run.Token)
		})
		fmt.Println(ran, err)
	}
	// Output:
	// posting the statistics of run 1
	// true <nil>
	// false <nil>
}

// Begin and End run work that does not fit a function under a lock the
// caller takes itself; here, waiting up to a minute for a run under way
// elsewhere to end rather than skipping at once.
func ExampleJob_Begin() {
	ctx := context.Background()
	pool := examplePool()
	defer pool.Close()

	job := periodic.New(pool, "example-export", time.Hour)
	lctx, cancel := context.WithTimeout(ctx, time.Minute)
	l, err := job.Mutex().Lock(lctx)
	cancel()
	if err != nil {
		log.Fatal(err)
	}
	defer l.Unlock(ctx)
	c, err := job.Begin(ctx, l)
	switch {
	case errors.Is(err, periodic.ErrNotDue):
		return // done within the hour
	case err != nil:
		log.Fatal(err)
	}
	workErr := postStats(ctx, c.Run().Token)
	if err := c.End(ctx, workErr); err != nil {
		log.Fatal(err)
	}
	s, err := job.Status(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("last success: run", s.LastSuccess.Token, "due again in", s.Due.Sub(s.LastSuccess.StartedAt))
	// Output:
	// posting the statistics of run 1
	// last success: run 1 due again in 1h0m0s
}
