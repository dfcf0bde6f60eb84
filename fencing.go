package advisorylock

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock/internal/dbobject"
	"github.com/advisorylock/advisorylock/internal/pgwire"
)

// Fencing tokens.
//
// A fenced Mutex draws a token from one sequence for each acquisition, in
// the lock statement itself: the lock calls run in a subquery kept apart by
// OFFSET 0, and nextval is evaluated by the outer query on the row the
// subquery returns, that is once every lock call of the statement has
// returned, with the lock granted (a try's CASE draws one only when every
// key was granted). The holder keeps the lock until a later statement
// releases it, so a holder granted after another draws after it: tokens
// increase in grant order, across sessions, processes and scopes. The
// sequence must not cache values (each session would draw from a range of
// its own) and must not cycle; it is checked, and created when missing, by
// the first fenced acquisition of a process (see internal/dbobject).

// FencingSequence is the name of the sequence fencing tokens are drawn from,
// in the schema [WithFencingSchema] names ([DefaultFencingSchema] unless
// set).
const FencingSequence = "advisorylock_fencing"

// DefaultFencingSchema is the schema of the fencing sequence when
// WithFencingSchema is not given.
const DefaultFencingSchema = "public"

// WithFencing makes every acquisition of the Mutex carry a fencing token
// ([Lock.Token]): a number, drawn from the sequence FencingSequence in the
// statement that takes the lock, after the grant, at no extra round trip.
// A holder granted the lock after another always has a larger token, across
// every process, session and scope: a resource that refuses tokens older
// than the newest it has seen (package fence) cannot be written by a holder
// that lost the lock without knowing it. The first fenced acquisition in a
// process checks the sequence, and creates it if it is missing (see the
// package documentation for the privileges needed and the SQL to create it
// ahead of time); a role that may not use or create it gets an error
// matching [ErrPrivilege].
func WithFencing() Option {
	return optionFunc(func(c *config) {
		if c.fencingSchema == "" {
			c.fencingSchema = DefaultFencingSchema
		}
	})
}

// WithFencingSchema is WithFencing with the fencing sequence in schema
// rather than DefaultFencingSchema. Every Mutex that shares a lock must name
// the same schema: tokens from two sequences are not ordered. An empty
// schema name, one longer than 63 bytes, or one that is not valid UTF-8
// makes every call of the Mutex fail with ErrInvalidArgument.
func WithFencingSchema(schema string) Option {
	return optionFunc(func(c *config) {
		if err := dbobject.CheckSchema(schema); err != nil {
			c.fail(invalid(fmt.Sprintf("WithFencingSchema(%q): %v", schema, err)))
			return
		}
		c.fencingSchema = schema
	})
}

// Token returns the lock's fencing token (see [WithFencing]), or 0 when its
// Mutex is not fenced. It is the same after release or loss: the token of
// the acquisition it came from.
func (l *Lock) Token() int64 {
	if l == nil {
		return 0
	}
	return l.token
}

// fencing is the fencing sequence of one schema in the database of one
// pool, as a Mutex uses it.
type fencing struct {
	h   *dbobject.Handle
	seq string // the sequence as a regclass literal, for the lock statements
}

// fencingFor returns the fencing sequence of schema in pool's database.
func fencingFor(pool *pgxpool.Pool, schema string) *fencing {
	obj := dbobject.Object{
		Schema:     schema,
		Name:       FencingSequence,
		Kind:       dbobject.Sequence,
		Privileges: []string{"USAGE, UPDATE"}, // nextval needs either
	}
	obj.Create = "create sequence if not exists " + obj.QualifiedName() + " as bigint cache 1 no cycle"
	return &fencing{h: dbobject.For(pool, obj), seq: regclassLiteral(obj.QualifiedName())}
}

// regclassLiteral renders a qualified name, already quoted as identifiers,
// as a regclass constant. The server resolves it when it parses the
// statement, before anything runs: a missing sequence fails the statement
// with nothing locked. The E'...' string form reads the same whatever
// standard_conforming_strings says.
func regclassLiteral(qualified string) string {
	return "E'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(qualified) + "'::pg_catalog.regclass"
}

// ensureFencing checks the fencing sequence, and creates it if it is missing,
// unless this process has done so already; it blocks for that (one round
// trip, a few when it creates), within bound when bound > 0, and returns
// what is left of bound.
func (m *Mutex) ensureFencing(ctx context.Context, bound time.Duration) (time.Duration, error) {
	if m.fence.h.Ready() {
		return bound, nil
	}
	start := time.Now()
	if bound > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, bound)
		defer cancel()
	}
	if err := m.fence.h.Ensure(ctx); err != nil {
		return 0, fencingError(err)
	}
	if bound > 0 {
		if bound -= time.Since(start); bound <= 0 {
			return 0, context.DeadlineExceeded
		}
	}
	return bound, nil
}

// fencingError turns a failed check of the sequence into the error Lock
// returns.
func fencingError(err error) error {
	var pe *dbobject.PrivilegeError
	if errors.As(err, &pe) {
		return &PrivilegeError{Role: pe.Role, Privilege: pe.Privilege, On: pe.On, Purpose: pe.Purpose}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return err
	}
	return fmt.Errorf("fencing sequence: %w", err)
}

// SQLSTATEs of a lock statement that found the sequence, or its schema,
// missing: raised when the statement is parsed, before any lock call.
const (
	sqlstateUndefinedTable  = "42P01"
	sqlstateInvalidSchema   = "3F000"
	sqlstateUndefinedPrepSt = "26000" // a pipelined use of a statement whose Parse failed
)

// forget makes the next fenced acquisition check the sequence again when err
// says it is missing (dropped since it was checked) or may no longer be used
// (a privilege revoked): that check then reports it before any lock call.
func (f *fencing) forget(err error) { f.h.Forget(err) }

// failedAfterGrant reports whether res, the answer to a fenced try on a lock
// session, is an error that may have come after keys were granted (from
// nextval): the session may then hold what this process does not know.
// Errors raised before any lock call (a missing sequence, a full lock
// table) leave it as it was.
func (m *Mutex) failedAfterGrant(res pgwire.Result) bool {
	if m.fence == nil || res.Err == nil {
		return false
	}
	switch res.Err.Code {
	case sqlstateUndefinedTable, sqlstateInvalidSchema, sqlstateUndefinedPrepSt, sqlstateOutOfSharedMemory:
		return false
	}
	return true
}

// The fenced forms of the lock statements (see the top of this file). seq is
// the sequence's regclass literal.

// fencedLock wraps lock, a statement "select <calls> [where <guard>]", into
// one that returns the token, drawn after every call: one row, or none when
// the guard kept the calls from running.
func fencedLock(lock, seq string) string {
	return "select pg_catalog.nextval(" + seq + ") from (" + lock + " offset 0) g"
}

// fencedTry returns a try statement answering its calls' result (one bool,
// or an array for a set) and the token, drawn only when every key was
// granted, 0 otherwise.
func fencedTry(calls, guard string, set bool, seq string) string {
	all := "g.ok"
	if set {
		all = "true = all(g.ok)"
	}
	return "select g.ok, case when " + all + " then pg_catalog.nextval(" + seq + ") else 0 end from (select " +
		calls + " as ok" + guard + " offset 0) g"
}

// scanTry scans the answer of a try (see scanBools), and with fencing the
// token that follows it.
func (m *Mutex) scanTry(row pgx.Row, ok *bool, token *int64) error {
	if m.fence == nil {
		return scanBools(row, m.sql.n, ok)
	}
	if m.sql.n == 1 {
		return row.Scan(ok, token)
	}
	var bs []bool
	err := row.Scan(&bs, token)
	*ok = err == nil && len(bs) == m.sql.n && allTrue(bs)
	return err
}
