package advisorylockgocron_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/jackc/pgx/v5/pgxpool"

	advisorylockgocron "github.com/advisorylock/advisorylock/gocron"
)

// examplePool connects to the database in DATABASE_URL, as a program would.
// It forgets the runs of earlier runs of the examples (the runs table may not
// exist yet), so that each starts afresh.
func examplePool() *pgxpool.Pool {
	pool, err := pgxpool.New(context.Background(), os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	_, _ = pool.Exec(context.Background(), "delete from public.advisorylock_runs where name like 'example-%'")
	return pool
}

// Every replica runs the same scheduler: across all of them, the statistics
// are posted once per half hour.
func ExampleNewLocker() {
	pool := examplePool()
	defer pool.Close()

	locker := advisorylockgocron.NewLocker(pool, 29*time.Minute)
	s, err := gocron.NewScheduler(
		gocron.WithDistributedLocker(locker),
		// So that a run that fails or panics does not count.
		gocron.WithGlobalJobOptions(gocron.WithEventListeners(locker.EventListeners()...)),
	)
	if err != nil {
		log.Fatal(err)
	}
	posted := make(chan struct{})
	_, err = s.NewJob(gocron.DurationJob(30*time.Minute),
		gocron.NewTask(func() error {
			fmt.Println("posting the statistics")
			close(posted) // here, one run and the example ends
			return nil
		}),
		gocron.WithName("example-slack-stats"),
		gocron.WithStartAt(gocron.WithStartImmediately()))
	if err != nil {
		log.Fatal(err)
	}
	s.Start()
	<-posted
	if err := s.Shutdown(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// posting the statistics
}

// One scheduler leads and runs the jobs; after a failover, the new leader
// runs nothing before the period has passed since the last job began.
func ExampleNewElector() {
	pool := examplePool()
	defer pool.Close()

	elector := advisorylockgocron.NewElector(pool, "example-scheduler-leader", 30*time.Minute)
	defer elector.Close(context.Background())
	s, err := gocron.NewScheduler(gocron.WithDistributedElector(elector))
	if err != nil {
		log.Fatal(err)
	}
	posted := make(chan struct{}, 1)
	// Here every 10ms, so that the example ends as soon as the Elector leads.
	_, err = s.NewJob(gocron.DurationJob(10*time.Millisecond),
		gocron.NewTask(func() {
			select {
			case posted <- struct{}{}:
				fmt.Println("posting the statistics")
			default:
			}
		}),
		gocron.WithName("slack-stats"))
	if err != nil {
		log.Fatal(err)
	}
	s.Start()
	<-posted
	if err := s.Shutdown(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// posting the statistics
}
