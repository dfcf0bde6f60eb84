package semaphore_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/semaphore"
)

// examplePool connects to the database in DATABASE_URL, as a program would.
func examplePool() *pgxpool.Pool {
	pool, err := pgxpool.New(context.Background(), os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	return pool
}

func ExampleNew() {
	ctx := context.Background()
	pool := examplePool()
	defer pool.Close()

	// At most 3 processes of the fleet call the partner's API at once; wait a
	// minute at most for a turn.
	s := semaphore.New(pool, "partner-api", 3, semaphore.WithTimeout(time.Minute))
	status, err := advisorylock.WithLock(ctx, s, func(ctx context.Context) (string, error) {
		// ... call the API; ctx is cancelled if the slot is lost.
		return "200 OK", nil
	})
	fmt.Println(status, err)
	// Output: 200 OK <nil>
}

func ExampleSemaphore_TryLock() {
	ctx := context.Background()
	pool := examplePool()
	defer pool.Close()

	s := semaphore.New(pool, "heavy-report", 2)
	for i := range 3 {
		l, err := s.TryLock(ctx)
		if errors.Is(err, advisorylock.ErrLocked) {
			fmt.Printf("report %d: both slots busy, skipped\n", i)
			continue
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("report %d: running\n", i)
		defer l.Unlock(ctx)
	}
	// Output:
	// report 0: running
	// report 1: running
	// report 2: both slots busy, skipped
}
