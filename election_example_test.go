package advisorylock_test

import (
	"context"
	"fmt"
	"log"

	"github.com/advisorylock/advisorylock"
)

func ExampleElection_Run() {
	pool := examplePool()
	defer pool.Close()

	e := advisorylock.NewElection(pool, "example-scheduler", advisorylock.WithIdentity("scheduler-1"))
	defer e.Close(context.Background())

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

	e := advisorylock.NewElection(pool, "example-migrations", advisorylock.WithIdentity("worker-1"))
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
