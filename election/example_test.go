package election_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock/election"
)

// examplePool connects to the database in DATABASE_URL, as a program would.
func examplePool() *pgxpool.Pool {
	pool, err := pgxpool.New(context.Background(), os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	return pool
}

func ExampleElection_Run() {
	pool := examplePool()
	defer pool.Close()

	e := election.New(pool, "example-scheduler", election.WithIdentity("scheduler-1"))
	defer e.Close(context.Background())

	// In a service: signal.NotifyContext(ctx, syscall.SIGTERM).
	ctx, shutdown := context.WithCancel(context.Background())
	err := e.Run(ctx, func(ctx context.Context) error {
		fmt.Println("leading")
		// ... schedule jobs until ctx is done: the leadership was lost, or
		// the process shuts down. Here it shuts down at once.
		shutdown()
		<-ctx.Done()
		return nil
	})
	fmt.Println(err)
	// Output:
	// leading
	// <nil>
}

func ExampleElection_Campaign() {
	ctx := context.Background()
	pool := examplePool()
	defer pool.Close()

	e := election.New(pool, "example-migrations", election.WithIdentity("worker-1"))
	defer e.Close(ctx)

	ld, err := e.Campaign(ctx) // blocks until this candidate leads
	if err != nil {
		log.Fatal(err)
	}
	leader, ok, err := e.Leader(ctx) // what the other candidates see
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(leader.Identity, ok)
	if err := ld.Resign(ctx); err != nil {
		log.Fatal(err)
	}
	// Output: worker-1 true
}

func ExampleElection_Observe() {
	pool := examplePool()
	defer pool.Close()

	watcher := election.New(pool, "example-observed", election.WithIdentity("dashboard"))
	defer watcher.Close(context.Background())
	candidate := election.New(pool, "example-observed", election.WithIdentity("worker-2"))
	defer candidate.Close(context.Background())

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	leaders, err := watcher.Observe(ctx) // needs no campaign
	if err != nil {
		log.Fatal(err)
	}
	show := func(c election.Candidate) {
		if c == (election.Candidate{}) {
			fmt.Println("no leader")
		} else {
			fmt.Println("leader:", c.Identity)
		}
	}
	show(<-leaders)
	ld, err := candidate.Campaign(ctx)
	if err != nil {
		log.Fatal(err)
	}
	show(<-leaders)
	if err := ld.Resign(ctx); err != nil {
		log.Fatal(err)
	}
	show(<-leaders)
	// Output:
	// no leader
	// leader: worker-2
	// no leader
}
