package pgwire_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/advisorylock/advisorylock/internal/pgwire"
)

// A lock taken with a deadline: when the answer comes after the caller gave
// up, the late handler releases what was granted meanwhile.
func ExampleSession_DoOr() {
	cfg, err := pgconn.ParseConfig(os.Getenv("PGWIRE_TEST_DSN"))
	if err != nil {
		fmt.Println(err)
		return
	}
	s, err := pgwire.Connect(context.Background(), cfg, pgwire.Options{Keepalive: 5 * time.Second})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close(context.Background())

	const lock = "select pg_catalog.pg_try_advisory_lock(1,2)"
	const unlock = "select 1 where pg_catalog.pg_advisory_unlock(1,2)"
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	res, err := s.DoOr(ctx, lock, func(res pgwire.Result, err error) {
		// On the reader goroutine: must not block. Send does not.
		if err == nil && res.Err == nil && string(res.Rows[0][0]) == "t" {
			_ = s.Send(unlock, nil)
		}
	})
	switch {
	case err != nil:
		fmt.Println("gave up:", err)
		return
	case res.Err != nil:
		fmt.Println("failed:", res.Err)
		return
	}
	fmt.Println("granted:", string(res.Rows[0][0]))

	res, err = s.Do(context.Background(), unlock)
	if err != nil || res.Err != nil {
		fmt.Println(err, res.Err)
		return
	}
	fmt.Println("released:", res.Tag)
	// Output:
	// granted: t
	// released: SELECT 1
}
