package semaphore_test

import (
	"errors"
	"testing"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
	"github.com/advisorylock/advisorylock/semaphore"
)

// Behind PgBouncer in transaction mode a slot (a session lock) would be
// stranded on a server session other clients get next, and so would the
// queue key: Lock and TryLock fail with ErrPooler and lock nothing, whether a
// slot is free (taken through the slot's Mutex) or the semaphore queues
// (its own statement checks the backend). testDB checks that nothing is left
// locked.
func TestLock_pooler(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	bouncer := pgtest.Require(t).PgBouncer(t, dsn)
	s := semaphore.New(newPool(t, bouncer), "pooler", 1)
	for _, lock := range []func() (*advisorylock.Lock, error){
		func() (*advisorylock.Lock, error) { return s.Lock(t.Context()) },
		func() (*advisorylock.Lock, error) { return s.TryLock(t.Context()) },
	} {
		if l, err := lock(); !errors.Is(err, advisorylock.ErrPooler) || l != nil {
			t.Errorf("with a slot free: %v, %v; want ErrPooler", l, err)
		}
	}
	// Every slot held (directly): the Lock queues, through the pooler.
	held := mustLock(t, semaphore.New(newPool(t, dsn), "pooler", 1))
	if l, err := s.Lock(t.Context()); !errors.Is(err, advisorylock.ErrPooler) || l != nil {
		t.Errorf("queueing: %v, %v; want ErrPooler", l, err)
	}
	release(t, held)
}

// On a hot standby, where advisory locks exclude nobody on the primary, Lock
// and TryLock fail with ErrStandby: with a slot free, and when the semaphore
// queues (a session of the standby holds the slot).
func TestLock_standby(t *testing.T) {
	t.Parallel()
	standby, err := pgtest.Require(t).StartStandby(t.Context())
	if err != nil {
		t.Fatalf("starting a standby: %v", err)
	}
	t.Cleanup(func() { standby.Stop() })
	s := semaphore.New(newPool(t, standby.DSN()), "standby", 1)
	for _, lock := range []func() (*advisorylock.Lock, error){
		func() (*advisorylock.Lock, error) { return s.Lock(t.Context()) },
		func() (*advisorylock.Lock, error) { return s.TryLock(t.Context()) },
	} {
		if l, err := lock(); !errors.Is(err, advisorylock.ErrStandby) || l != nil {
			t.Errorf("with a slot free: %v, %v; want ErrStandby", l, err)
		}
	}
	raw := pgtest.Connect(t, standby.DSN())
	k, _ := s.SlotKey(0).Int64()
	if _, err := raw.Exec(t.Context(), "select pg_advisory_lock($1::int8)", k); err != nil {
		t.Fatal(err)
	}
	if l, err := s.Lock(t.Context()); !errors.Is(err, advisorylock.ErrStandby) || l != nil {
		t.Errorf("queueing: %v, %v; want ErrStandby", l, err)
	}
}
