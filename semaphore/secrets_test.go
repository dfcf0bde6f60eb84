package semaphore_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock/internal/pgtest"
	"github.com/advisorylock/advisorylock/semaphore"
)

// No error of a semaphore shows a password: with a connection that works, is
// refused, or is denied.
func TestSecrets_errors(t *testing.T) {
	t.Parallel()
	srv := pgtest.Require(t)
	dsn := testDB(t)
	dsns, secrets := srv.SecretDSNs(t, dsn)
	var texts []string
	for _, d := range dsns {
		cfg, err := pgxpool.ParseConfig(d.DSN)
		if err != nil {
			t.Fatal(err)
		}
		cfg.MaxConns = 4
		pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		s := semaphore.New(pool, "secrets", 1, semaphore.WithTimeout(time.Second))
		l, err := s.Lock(ctx)
		if (err == nil) != d.OK {
			t.Errorf("%s: Lock = %v", d.Name, err)
		}
		if err != nil {
			texts = append(texts, d.Name+": "+err.Error())
		}
		// Held: a second Lock times out, in the queue, and TryLock is busy.
		if l != nil {
			_, err := s.Lock(ctx)
			texts = append(texts, d.Name+", busy: "+err.Error())
			if err := l.Unlock(ctx); err != nil {
				t.Error(err)
			}
		}
		if _, err := s.Holders(ctx); err != nil {
			texts = append(texts, d.Name+", holders: "+err.Error())
		}
		cancel()
		pool.Close()
	}
	pgtest.AssertNoSecrets(t, texts, secrets...)
}
