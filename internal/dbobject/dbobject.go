// Package dbobject makes sure, on first use, that a database object the
// module needs (the fencing sequence, a fence table) exists and can be used,
// creating it when it is missing and the role may, and otherwise says
// exactly which privilege is missing.
//
// One query reads the catalogs: whether the schema exists, the role's USAGE
// and CREATE on it, whether the object exists and is of the right kind, the
// privileges the role lacks on it, and a sequence's settings. Creation is one
// transaction that first takes a transaction-level advisory lock on SetupKey,
// then runs the object's CREATE ... IF NOT EXISTS: two processes starting
// together create it once, and neither fails (CREATE ... IF NOT EXISTS alone
// is not safe against a concurrent creation: the loser can fail on a unique
// index of the catalog).
package dbobject

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// SetupKey is the bigint advisory lock key that serializes creations: held
// for the length of a creation's transaction.
const SetupKey int64 = 0x61646c6b_73657475 // "adlksetu"

// MaxNameLen is PostgreSQL's limit on an identifier's length, in bytes
// (NAMEDATALEN - 1); a longer one would be truncated.
const MaxNameLen = 63

// Kind is the kind of an object.
type Kind uint8

const (
	// Sequence is a sequence; it must not cache values, must increase and
	// must not cycle.
	Sequence Kind = iota
	// Table is an ordinary or partitioned table.
	Table
)

// relkinds are the pg_class.relkind values of k.
func (k Kind) relkinds() string {
	if k == Sequence {
		return "S"
	}
	return "rp"
}

func (k Kind) String() string {
	if k == Sequence {
		return "sequence"
	}
	return "table"
}

// An Object is a database object to make sure of.
type Object struct {
	Schema string
	Name   string
	Kind   Kind
	// Privileges are what the role needs on the object, each as
	// has_sequence_privilege or has_table_privilege take it: "USAGE, UPDATE"
	// is satisfied by either.
	Privileges []string
	// Create creates the object unless it exists (CREATE ... IF NOT EXISTS).
	Create string
}

// QualifiedName is the object's name as SQL names it: schema and name,
// each quoted.
func (o Object) QualifiedName() string { return pgx.Identifier{o.Schema, o.Name}.Sanitize() }

// Describe names the object for messages: `sequence "public"."x"`.
func (o Object) Describe() string { return o.Kind.String() + " " + o.QualifiedName() }

// CheckSchema returns an error saying what is wrong with schema as a
// schema's name, or nil: it must be valid UTF-8, not empty, no longer than
// MaxNameLen bytes and free of NUL bytes.
func CheckSchema(schema string) error {
	switch {
	case schema == "":
		return errors.New("empty schema name")
	case len(schema) > MaxNameLen:
		return fmt.Errorf("schema name of %d bytes; PostgreSQL allows %d", len(schema), MaxNameLen)
	case strings.IndexByte(schema, 0) >= 0:
		return errors.New("schema name with a NUL byte")
	case !utf8.ValidString(schema):
		return errors.New("schema name not valid UTF-8")
	}
	return nil
}

// ErrNoSchema matches the error of Ensure when the object's schema does not
// exist: only someone who may create schemas can mend that.
var ErrNoSchema = errors.New("schema does not exist")

// missingSchema is the error of a missing schema, matching ErrNoSchema.
type missingSchema struct{ schema string } // quoted

func (e *missingSchema) Error() string        { return e.schema + " does not exist" }
func (e *missingSchema) Is(target error) bool { return target == ErrNoSchema }

// A PrivilegeError reports a privilege the role lacks.
type PrivilegeError struct {
	Role      string // current_user
	Privilege string // "CREATE", "USAGE", "USAGE or UPDATE", "SELECT and INSERT", ...
	On        string // the object lacking it: `schema "public"`, `sequence "public"."x"`
	Purpose   string // what it is needed for, or ""
}

func (e *PrivilegeError) Error() string {
	s := fmt.Sprintf("role %s lacks %s on %s", pgx.Identifier{e.Role}.Sanitize(), e.Privilege, e.On)
	if e.Purpose != "" {
		s += ", needed " + e.Purpose
	}
	return s
}

// DB is what Ensure needs of a pool.
type DB interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Begin(ctx context.Context) (pgx.Tx, error)
}

// state is what the catalogs say of an object.
type state struct {
	schemaExists, usage, create bool
	relkind                     string   // "" when missing
	lacking                     []string // privileges lacking on the object
	seqCache, seqIncrement      int64
	seqCycle                    bool
	role                        string
}

// checkSQL reads an object's state: $1 the schema, $2 the name, $3 the
// privileges needed on it, $4 the relkinds it may have. The CASE tests the
// privileges only on an object of one of those kinds (has_sequence_privilege
// fails on a table, and a table has no USAGE).
const checkSQL = `select n.oid is not null,
	coalesce(pg_catalog.has_schema_privilege(n.oid, 'USAGE'), false),
	coalesce(pg_catalog.has_schema_privilege(n.oid, 'CREATE'), false),
	coalesce(c.relkind::text, ''),
	case when pg_catalog.strpos($4::text, c.relkind::text) = 0 then null
		when c.relkind = 'S' then array(select p from pg_catalog.unnest($3::text[]) p where not pg_catalog.has_sequence_privilege(c.oid, p))
		when c.relkind in ('r', 'p') then array(select p from pg_catalog.unnest($3::text[]) p where not pg_catalog.has_table_privilege(c.oid, p))
	end,
	coalesce(s.seqcache, 0), coalesce(s.seqincrement, 0), coalesce(s.seqcycle, false),
	current_user::text
from (select $1::text as nspname) a
left join pg_catalog.pg_namespace n on n.nspname = a.nspname
left join pg_catalog.pg_class c on c.relnamespace = n.oid and c.relname = $2::text
left join pg_catalog.pg_sequence s on s.seqrelid = c.oid`

func check(ctx context.Context, db DB, o Object) (state, error) {
	var st state
	err := db.QueryRow(ctx, checkSQL, o.Schema, o.Name, o.Privileges, o.Kind.relkinds()).Scan(&st.schemaExists, &st.usage, &st.create,
		&st.relkind, &st.lacking, &st.seqCache, &st.seqIncrement, &st.seqCycle, &st.role)
	return st, err
}

// SQLSTATEs of a creation that raced another one made without SetupKey.
const (
	sqlstateUniqueViolation = "23505"
	sqlstateDuplicateTable  = "42P07"
	sqlstateInsufficient    = "42501"
)

// Ensure makes sure o exists and that the role may use it, creating it when
// it is missing and the role may create it. It blocks for one round trip
// when o is ready, a few more when it creates it (waiting for a creation
// under way elsewhere), bounded by ctx. It returns a *PrivilegeError for a
// missing privilege, and an error saying what is wrong when the schema is
// missing or o is not what it must be.
func Ensure(ctx context.Context, db DB, o Object) error {
	schema := "schema " + pgx.Identifier{o.Schema}.Sanitize()
	for attempt := 0; ; attempt++ {
		st, err := check(ctx, db, o)
		if err != nil {
			return err
		}
		switch {
		case !st.schemaExists:
			return &missingSchema{schema}
		case !st.usage:
			return &PrivilegeError{Role: st.role, Privilege: "USAGE", On: schema, Purpose: "to use " + o.Describe()}
		case st.relkind == "" && attempt < 3:
			if !st.create {
				return &PrivilegeError{Role: st.role, Privilege: "CREATE", On: schema, Purpose: "to create " + o.Describe()}
			}
			if err := create(ctx, db, o); err != nil {
				var pgErr *pgconn.PgError
				switch {
				case errors.As(err, &pgErr) && (pgErr.Code == sqlstateUniqueViolation || pgErr.Code == sqlstateDuplicateTable):
					// Created meanwhile by someone not taking SetupKey.
				case errors.As(err, &pgErr) && pgErr.Code == sqlstateInsufficient:
					return &PrivilegeError{Role: st.role, Privilege: "CREATE", On: schema, Purpose: "to create " + o.Describe()}
				default:
					return fmt.Errorf("creating %s: %w", o.Describe(), err)
				}
			}
			continue
		case st.relkind == "":
			return fmt.Errorf("%s still missing after its creation", o.Describe())
		case !strings.Contains(o.Kind.relkinds(), st.relkind):
			return fmt.Errorf("%s exists but is not a %s", o.QualifiedName(), o.Kind)
		case len(st.lacking) > 0:
			return &PrivilegeError{Role: st.role, Privilege: privilegeNames(st.lacking), On: o.Describe()}
		case o.Kind == Sequence && (st.seqCache != 1 || st.seqIncrement <= 0 || st.seqCycle):
			// A cache hands each session a range of values of its own, so
			// values would not increase in the order they are drawn across
			// sessions; a cycle would start again from the bottom.
			cycle := ""
			if st.seqCycle {
				cycle = ", CYCLE"
			}
			return fmt.Errorf("%s must have CACHE 1, a positive INCREMENT and NO CYCLE (it has CACHE %d, INCREMENT %d%s)",
				o.Describe(), st.seqCache, st.seqIncrement, cycle)
		}
		return nil
	}
}

// privilegeNames says privileges for a message: "USAGE, UPDATE" (either)
// becomes "USAGE or UPDATE"; several are joined with "and".
func privilegeNames(privs []string) string {
	names := make([]string, len(privs))
	for i, p := range privs {
		names[i] = strings.ReplaceAll(p, ", ", " or ")
	}
	return strings.Join(names, " and ")
}

// create creates o unless it exists, in a transaction holding SetupKey, so
// that concurrent creations run one after the other: the later finds the
// object and skips.
func create(ctx context.Context, db DB, o Object) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }() // after Commit, a no-op
	if _, err := tx.Exec(ctx, "select pg_catalog.pg_advisory_xact_lock($1)", SetupKey); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, o.Create); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
