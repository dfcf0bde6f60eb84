package periodic

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/dbobject"
)

// TableName is the name of the runs table, in the schema [WithSchema] chooses.
const TableName = "advisorylock_runs"

// SQLSTATEs the package tells apart.
const (
	codeUndefinedTable   = "42P01"
	codeInsufficientPriv = "42501"
)

// TableSQL returns the statement that creates the runs table in schema (the
// identifier quoted as PostgreSQL needs it), as a Job runs it on first use:
// for a DBA to run ahead of time, or for a migration tool. It is idempotent
// (CREATE TABLE IF NOT EXISTS). The package doc lists the columns and the
// privileges a Job needs.
func TableSQL(schema string) string {
	return fmt.Sprintf(tableSQL, qualified(schema))
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

// tableFor returns the runs table in schema of pool's database, shared by
// every Job that names them: a process checks it (and creates it if it is
// missing) once, before its first run.
func tableFor(pool *pgxpool.Pool, schema string) *dbobject.Handle {
	return dbobject.For(pool, dbobject.Object{
		Schema:     schema,
		Name:       TableName,
		Kind:       dbobject.Table,
		Privileges: []string{"SELECT", "INSERT", "UPDATE"},
		Create:     TableSQL(schema),
	})
}

// A schemaError reports the runs table's schema missing: no run can begin
// until someone creates it.
type schemaError struct{ schema string }

func (e *schemaError) Error() string {
	return fmt.Sprintf("schema %s does not exist (create it, or choose another with WithSchema)", pgx.Identifier{e.schema}.Sanitize())
}

// ensure checks the table, and creates it when it is missing, unless this
// process has done so already: one round trip, a few more to create it
// (two processes starting together create it once: see dbobject). It blocks
// for that, bounded by ctx. It returns a *advisorylock.PrivilegeError for a
// missing privilege, and a *schemaError when the schema does not exist.
func (j *Job) ensureTable(ctx context.Context) error {
	if err := j.tbl.Ensure(ctx); err != nil {
		return j.explain(err)
	}
	return nil
}

// explain turns an error of dbobject's into the package's: a privilege the
// role lacks becomes the module's *advisorylock.PrivilegeError, and a
// missing schema a *schemaError.
func (j *Job) explain(err error) error {
	var pe *dbobject.PrivilegeError
	switch {
	case errors.As(err, &pe):
		return &advisorylock.PrivilegeError{Role: pe.Role, Privilege: pe.Privilege, On: pe.On, Purpose: pe.Purpose}
	case errors.Is(err, dbobject.ErrNoSchema):
		return &schemaError{j.tbl.Object().Schema}
	}
	return err
}

// withTable runs f, a statement on the table, once the table is checked; when
// f finds it missing or refused (dropped, or a privilege revoked since the
// check), it checks it again, which creates it or says what is wrong, and
// runs f once more.
func (j *Job) withTable(ctx context.Context, f func() error) error {
	for retried := false; ; retried = true {
		if err := j.ensureTable(ctx); err != nil {
			return err
		}
		err := f()
		if !j.tbl.Forget(err) || retried {
			return err
		}
	}
}

// sqlState returns the SQLSTATE of a server error, or "".
func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}
