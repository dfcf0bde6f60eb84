package fence

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/dbobject"
)

// Table is the name of the table that records the newest token of each
// resource, in the schema WithSchema names ([DefaultSchema] unless set).
const Table = "advisorylock_fence"

// DefaultSchema is the schema of Table when WithSchema is not given.
const DefaultSchema = "public"

// ErrStale reports a write refused because its token is older than the
// newest the resource has accepted: its holder lost the lock, and another
// holder has written since.
var ErrStale = errors.New("advisorylock: stale fencing token")

// A Resource is a fenced resource: a name whose writes apply only with a
// token at least as new as the newest it has accepted. It is safe for
// concurrent use and holds no state on the server beyond its row in Table.
// Create one with [New].
type Resource struct {
	pool  *pgxpool.Pool
	name  string
	table *table // nil when err is set
	err   error  // bad input, reported by every call
}

// New returns the fenced resource called name (any text: it is a row's key,
// never SQL), recorded in Table in the database of pool, which may be
// another database than the lock's. New does no I/O and never fails: an
// empty name, a nil pool or an invalid option is reported, as an error
// matching advisorylock.ErrInvalidArgument, by every call, before any round
// trip.
func New(pool *pgxpool.Pool, name string, opts ...Option) *Resource {
	c := newConfig(opts)
	r := &Resource{pool: pool, name: name, err: c.err}
	switch {
	case r.err != nil:
	case pool == nil:
		r.err = invalid("nil pool")
	case name == "":
		r.err = invalid("empty resource name")
	default:
		r.table = tableFor(pool, c.schema)
	}
	return r
}

// Name returns the resource's name.
func (r *Resource) Name() string { return r.name }

// String describes the resource for messages: `resource "name"`.
func (r *Resource) String() string { return "resource " + strconv.Quote(r.name) }

// Write runs fn in a transaction on the resource's pool, if token is at least
// the newest token the resource has accepted, and records token as the
// newest in the same transaction: fn's writes and the record commit
// together, or neither does. A writer with a newer token that runs
// concurrently waits for the transaction to end (the resource's row is
// locked), so accepted tokens never decrease in commit order.
//
// Write blocks for a round trip (BEGIN and the check in one), fn, and the
// COMMIT, bounded by ctx. It returns fn's error as is, after a rollback. An
// older token returns an error matching ErrStale, having run nothing. A
// token below 1 (0 is the token of a lock without fencing) or a nil fn is
// reported as advisorylock.ErrInvalidArgument before any round trip; a role
// that may not use or create Table gets an error matching
// advisorylock.ErrPrivilege. The first call in a process checks Table, and
// creates it when it is missing (see the package documentation).
func (r *Resource) Write(ctx context.Context, token int64, fn func(ctx context.Context, tx pgx.Tx) error) error {
	switch {
	case r == nil:
		return &advisorylock.Error{Op: "write", Err: invalid("nil Resource")}
	case r.err != nil:
		return r.errorf("write", r.err)
	case fn == nil:
		return r.errorf("write", invalid("nil function"))
	case token < 1:
		return r.errorf("write", invalid(fmt.Sprintf("token %d; tokens start at 1 (a lock without fencing has 0)", token)))
	}
	if err := r.table.ensure(ctx); err != nil {
		return r.errorf("write", err)
	}
	conn, err := r.pool.Acquire(ctx)
	if err != nil {
		return r.errorf("write", fmt.Errorf("acquiring a connection: %w", err))
	}
	// Released inside a transaction (fn failed, a panic), pgxpool destroys
	// the connection, which rolls it back.
	defer conn.Release()
	b := &pgx.Batch{}
	b.BeginTx(pgx.TxOptions{})
	accepted := true
	b.Queue(r.table.admit, r.name, token).QueryRow(func(row pgx.Row) error {
		var newest int64
		err := row.Scan(&newest)
		if errors.Is(err, pgx.ErrNoRows) {
			accepted, err = false, nil
		}
		return err
	})
	br := conn.SendBatch(ctx, b)
	err = br.Close()
	tx := br.Tx()
	rollback := func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }
	if err != nil {
		if tx != nil {
			rollback()
		}
		r.table.forget(err)
		return r.errorf("write", err)
	}
	if !accepted {
		var newest int64
		err := tx.QueryRow(ctx, r.table.newest, r.name).Scan(&newest)
		rollback()
		if err != nil {
			return r.errorf("write", ErrStale, err)
		}
		return r.errorf("write", fmt.Errorf("%w: token %d, older than the newest accepted, %d", ErrStale, token, newest))
	}
	completed := false
	defer func() {
		if !completed {
			rollback() // fn panicked or called runtime.Goexit
		}
	}()
	if err := fn(ctx, tx); err != nil {
		completed = true
		rollback()
		return err
	}
	completed = true
	if err := tx.Commit(ctx); err != nil {
		return r.errorf("write", err)
	}
	return nil
}

// Newest returns the newest token the resource has accepted, or 0 if none.
// It blocks for one round trip, bounded by ctx (two on the first call in a
// process, which checks Table). Errors are as Write's.
func (r *Resource) Newest(ctx context.Context) (int64, error) {
	switch {
	case r == nil:
		return 0, &advisorylock.Error{Op: "newest", Err: invalid("nil Resource")}
	case r.err != nil:
		return 0, r.errorf("newest", r.err)
	}
	if err := r.table.ensure(ctx); err != nil {
		return 0, r.errorf("newest", err)
	}
	var newest int64
	err := r.pool.QueryRow(ctx, r.table.newest, r.name).Scan(&newest)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return 0, nil
	case err != nil:
		r.table.forget(err)
		return 0, r.errorf("newest", err)
	}
	return newest, nil
}

// errorf returns the error of op on r: errs in a row, most general first.
func (r *Resource) errorf(op string, errs ...error) error {
	err := errs[0]
	if len(errs) > 1 {
		err = fmt.Errorf("%w: %w", errs[0], errs[1])
	}
	return &advisorylock.Error{Op: op, Lock: r.String(), Err: err}
}

// invalid returns an error about bad input, matching
// advisorylock.ErrInvalidArgument.
func invalid(what string) error {
	return fmt.Errorf("%w: %s", advisorylock.ErrInvalidArgument, what)
}

// table is Table in one schema of one pool's database, with the statements
// a Resource runs on it.
type table struct {
	h      *dbobject.Handle
	admit  string // records a token unless older than the newest: a row if accepted
	newest string // reads the newest token
}

// tableFor returns Table in schema of pool's database.
func tableFor(pool *pgxpool.Pool, schema string) *table {
	obj := dbobject.Object{
		Schema:     schema,
		Name:       Table,
		Kind:       dbobject.Table,
		Privileges: []string{"SELECT", "INSERT", "UPDATE"},
	}
	q := obj.QualifiedName()
	obj.Create = "create table if not exists " + q + ` (
	resource text primary key,
	token bigint not null check (token > 0),
	updated_at timestamptz not null default pg_catalog.now()
)`
	return &table{
		h: dbobject.For(pool, obj),
		// ON CONFLICT locks the resource's row, also when the WHERE refuses
		// the update: writers take turns, and each compares its token with
		// the newest committed before it.
		admit: "insert into " + q + ` as f (resource, token) values ($1, $2)
	on conflict (resource) do update set token = excluded.token, updated_at = pg_catalog.now()
	where f.token <= excluded.token
	returning f.token`,
		newest: "select token from " + q + " where resource = $1",
	}
}

// ensure checks Table, and creates it when it is missing, unless this
// process has done so already. It blocks for that, bounded by ctx.
func (t *table) ensure(ctx context.Context) error {
	err := t.h.Ensure(ctx)
	var pe *dbobject.PrivilegeError
	if errors.As(err, &pe) {
		return &advisorylock.PrivilegeError{Role: pe.Role, Privilege: pe.Privilege, On: pe.On, Purpose: pe.Purpose}
	}
	return err
}

// forget makes the next call check Table again when err says it is missing
// or may no longer be used.
func (t *table) forget(err error) { t.h.Forget(err) }
