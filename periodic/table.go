package periodic

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TableName is the name of the runs table, in the schema [WithSchema] chooses.
const TableName = "advisorylock_runs"

// SQLSTATEs the package tells apart.
const (
	codeUndefinedTable    = "42P01"
	codeDuplicateTable    = "42P07"
	codeUniqueViolation   = "23505"
	codeInvalidSchemaName = "3F000"
	codeInsufficientPriv  = "42501"
)

// TableSQL returns the statement that creates the runs table in schema (the
// identifier quoted as PostgreSQL needs it), as a Job runs it on first use:
// for a DBA to run ahead of time, or for a migration tool. It is idempotent
// (CREATE TABLE IF NOT EXISTS). The package doc lists the columns and the
// privileges a Job needs.
func TableSQL(schema string) string {
	return fmt.Sprintf(tableSQL, pgx.Identifier{schema, TableName}.Sanitize())
}

// tableSQL is the runs table, one row per job name. The comments are the
// columns' documentation, which the package doc repeats.
const tableSQL = `create table if not exists %s (
	name                text primary key,      -- the job name
	run                 bigint not null,       -- the last run's number: 1, 2, 3, ... (its fencing token)
	started_at          timestamptz not null,  -- when the last run started (server clock)
	started_by          text not null,         -- who started it (the identity)
	finished_at         timestamptz,           -- when it ended; null while it runs, or if its process died
	failure             text,                  -- why it failed; null if it succeeded or has not ended
	success_run         bigint,                -- the last successful run's number
	success_started_at  timestamptz,           -- when it started
	success_finished_at timestamptz,           -- when it ended
	success_by          text                   -- who ran it
)`

// qualified returns the runs table's name in schema, quoted.
func qualified(schema string) string {
	return pgx.Identifier{schema, TableName}.Sanitize()
}

// createSQL creates the table, serialised between processes by a
// transaction-level advisory lock on the bigint key
// hashtextextended('<schema>.advisorylock_runs', 0): CREATE TABLE IF NOT
// EXISTS alone is not safe when two sessions run it at once (one can fail on
// the catalog's unique indexes). $1 is the key's text.
const createLockSQL = "select pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended($1, 0))"

// createTable creates the runs table unless it exists. A process that loses
// a race with a creator that does not take the lock (a DBA, a migration)
// finds the table there and succeeds.
func (j *Job) createTable(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, j.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, createLockSQL, j.cfg.schema+"."+TableName); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, TableSQL(j.cfg.schema))
		return err
	})
	if code := sqlState(err); code == codeDuplicateTable || code == codeUniqueViolation {
		return nil
	}
	return err
}

// withTable runs f, and when the table does not exist yet, creates it and
// runs f again.
func (j *Job) withTable(ctx context.Context, f func() error) error {
	err := f()
	if sqlState(err) != codeUndefinedTable {
		return err
	}
	if err := j.createTable(ctx); err != nil {
		return err
	}
	return f()
}

// Privileges a statement of the package needs on the table.
const (
	needRead  = "SELECT"
	needWrite = "SELECT, INSERT, UPDATE"
)

// diagnoseSQL tells which privileges the session's user has on the schema
// and the table; pg_namespace and pg_class are readable by everyone.
const diagnoseSQL = `select n.oid is not null,
	coalesce(pg_catalog.has_schema_privilege(n.oid, 'USAGE'), false),
	coalesce(pg_catalog.has_schema_privilege(n.oid, 'CREATE'), false),
	c.oid is not null,
	coalesce(pg_catalog.has_table_privilege(c.oid, 'SELECT'), false),
	coalesce(pg_catalog.has_table_privilege(c.oid, 'INSERT'), false),
	coalesce(pg_catalog.has_table_privilege(c.oid, 'UPDATE'), false)
from (select) one
left join pg_catalog.pg_namespace n on n.nspname = $1
left join pg_catalog.pg_class c on c.relnamespace = n.oid and c.relname = $2`

// explain turns a server error into the package's error: a missing schema
// says so, and a refused privilege becomes a *PrivilegeError naming it
// (need lists the privileges the statement needs on the table). Other errors
// are returned as they are.
func (j *Job) explain(ctx context.Context, err error, need string) error {
	switch sqlState(err) {
	case codeInvalidSchemaName:
		return fmt.Errorf("schema %s does not exist (create it, or choose another with WithSchema): %w",
			pgx.Identifier{j.cfg.schema}.Sanitize(), err)
	case codeInsufficientPriv:
	default:
		return err
	}
	var hasSchema, usage, create, hasTable, sel, ins, upd bool
	derr := j.pool.QueryRow(ctx, diagnoseSQL, j.cfg.schema, TableName).
		Scan(&hasSchema, &usage, &create, &hasTable, &sel, &ins, &upd)
	if derr != nil || !hasSchema {
		return err
	}
	schema := "schema " + pgx.Identifier{j.cfg.schema}.Sanitize()
	switch {
	case !usage:
		return &PrivilegeError{Privilege: "USAGE", Object: schema, Err: err}
	case !hasTable && !create:
		return &PrivilegeError{Privilege: "CREATE", Object: schema, Err: err}
	case !hasTable:
		return err
	}
	var missing []string
	for _, p := range []struct {
		name string
		has  bool
	}{{"SELECT", sel}, {"INSERT", ins}, {"UPDATE", upd}} {
		if !p.has && strings.Contains(need, p.name) {
			missing = append(missing, p.name)
		}
	}
	if len(missing) == 0 {
		return err
	}
	return &PrivilegeError{Privilege: strings.Join(missing, ", "), Object: "table " + qualified(j.cfg.schema), Err: err}
}

// sqlState returns the SQLSTATE of a server error, or "".
func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}
