package fence_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/fence"
)

// examplePool connects to the database in DATABASE_URL, as a program would.
func examplePool() *pgxpool.Pool {
	pool, err := pgxpool.New(context.Background(), os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	return pool
}

// Two holders of one lock, one after the other: the first lost its lock
// without knowing it (a long pause), and writes after the second. The fenced
// resource takes the second's write and refuses the first's.
func ExampleResource_Write() {
	ctx := context.Background()
	pool := examplePool()
	defer pool.Close()
	if _, err := pool.Exec(ctx, "create table if not exists example_reports (id int primary key, author text)"); err != nil {
		log.Fatal(err)
	}

	m := advisorylock.New(pool, "example-report", advisorylock.WithFencing())
	report := fence.New(pool, "example-report")
	publish := func(author string) func(ctx context.Context, tx pgx.Tx) error {
		return func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `insert into example_reports values (1, $1)
				on conflict (id) do update set author = excluded.author`, author)
			return err
		}
	}

	first, err := m.Lock(ctx)
	if err != nil {
		log.Fatal(err)
	}
	// The first holder pauses; its lock is lost (here, released for it),
	// and a second holder takes it.
	if err := first.Unlock(ctx); err != nil {
		log.Fatal(err)
	}
	second, err := m.Lock(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("second's token is newer:", second.Token() > first.Token())
	fmt.Println("second writes:", report.Write(ctx, second.Token(), publish("second")))
	if err := second.Unlock(ctx); err != nil {
		log.Fatal(err)
	}

	// The first holder wakes up and writes, with its old token.
	err = report.Write(ctx, first.Token(), publish("first"))
	fmt.Println("first's write is stale:", errors.Is(err, fence.ErrStale))

	var author string
	if err := pool.QueryRow(ctx, "select author from example_reports where id = 1").Scan(&author); err != nil {
		log.Fatal(err)
	}
	fmt.Println("the report is by:", author)
	// Output:
	// second's token is newer: true
	// second writes: <nil>
	// first's write is stale: true
	// the report is by: second
}
