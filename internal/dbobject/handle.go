package dbobject

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgconn"
)

// A Handle is one Object in one database, as a process uses it: Ensure
// checks it (and creates it) once, and Forget makes the next Ensure check it
// again after a statement found it gone or forbidden. Every user of the same
// object in the same database shares one Handle ([For]), so a process checks
// each object once however many locks, resources or jobs name it. Its
// methods are safe for concurrent use.
type Handle struct {
	db    DB
	obj   Object
	ready atomic.Bool   // Ensure succeeded, and Forget has not undone it since
	turn  chan struct{} // holds a token while a goroutine checks: one check at a time
}

type handleKey struct {
	db           DB
	schema, name string
}

// handles are the Handles made so far, one per database (as a DB: one pool)
// and object; guarded by their mutex.
var handles = struct {
	mu sync.Mutex
	m  map[handleKey]*Handle
}{m: make(map[handleKey]*Handle)}

// For returns the Handle of o in db's database, the same one for every call
// with the same db, o.Schema and o.Name; o's other fields are those of the
// first call. db must be comparable (a *pgxpool.Pool is).
func For(db DB, o Object) *Handle {
	handles.mu.Lock()
	defer handles.mu.Unlock()
	k := handleKey{db, o.Schema, o.Name}
	if h := handles.m[k]; h != nil {
		return h
	}
	h := &Handle{db: db, obj: o, turn: make(chan struct{}, 1)}
	handles.m[k] = h
	return h
}

// Object returns the object h stands for.
func (h *Handle) Object() Object { return h.obj }

// Ready reports whether the object was found usable and not forgotten since:
// then Ensure returns nil without a round trip.
func (h *Handle) Ready() bool { return h.ready.Load() }

// Ensure returns nil at once when the object was found usable before (and
// not forgotten since). Otherwise it runs [Ensure], one goroutine of the
// process at a time, the others waiting for its outcome; it blocks for that,
// bounded by ctx, and returns Ensure's error or ctx's.
func (h *Handle) Ensure(ctx context.Context) error {
	if h.ready.Load() {
		return nil
	}
	select {
	case h.turn <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-h.turn }()
	if h.ready.Load() {
		return nil // checked by the goroutine before us
	}
	if err := Ensure(ctx, h.db, h.obj); err != nil {
		return err
	}
	h.ready.Store(true)
	return nil
}

// SQLSTATEs of a statement that found an object, or its schema, missing or
// forbidden.
const (
	sqlstateUndefinedTable = "42P01"
	sqlstateInvalidSchema  = "3F000"
)

// Forget makes the next Ensure check the object again when err, a
// statement's error, says the object or its schema is missing (dropped since
// it was checked) or a privilege is lacking (revoked since), and reports
// whether it did. That check then reports what is wrong, before the
// statement runs again.
func (h *Handle) Forget(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case sqlstateUndefinedTable, sqlstateInvalidSchema, sqlstateInsufficient:
		h.ready.Store(false)
		return true
	}
	return false
}
