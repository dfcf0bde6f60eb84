package advisorylock

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// lockTx is the pgx.Tx handed out by a transaction-scoped lock. It runs
// statements in the lock's transaction, refuses to end it (the lock does), and
// notices when the connection under it breaks: the lock is then lost.
type lockTx struct {
	pgx.Tx
	l *Lock
}

// Commit returns ErrTxManaged: the transaction commits when the lock is
// released.
func (t *lockTx) Commit(context.Context) error { return ErrTxManaged }

// Rollback returns ErrTxManaged: the transaction rolls back when the lock is
// released with Rollback, or when WithLock's function fails.
func (t *lockTx) Rollback(context.Context) error { return ErrTxManaged }

// check returns ErrNotHeld once the lock has been released, so no statement
// runs outside the lock's transaction.
func (t *lockTx) check() error {
	t.l.mu.Lock()
	defer t.l.mu.Unlock()
	if t.l.state != stateHeld {
		if t.l.err != nil {
			return t.l.m.errorf("tx", t.l.err)
		}
		return t.l.m.errorf("tx", ErrNotHeld)
	}
	return nil
}

// after marks the lock lost when a statement found the connection broken.
func (t *lockTx) after(err error) {
	if err != nil && t.Tx.Conn().IsClosed() {
		t.l.lose(err)
	}
}

// Exec runs sql in the lock's transaction.
func (t *lockTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if err := t.check(); err != nil {
		return pgconn.CommandTag{}, err
	}
	tag, err := t.Tx.Exec(ctx, sql, args...)
	t.after(err)
	return tag, err
}

// Query runs sql in the lock's transaction.
func (t *lockTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	rows, err := t.Tx.Query(ctx, sql, args...)
	t.after(err)
	if err != nil {
		return rows, err
	}
	return &checkedRows{Rows: rows, t: t}, nil
}

// QueryRow runs sql in the lock's transaction.
func (t *lockTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := t.check(); err != nil {
		return errRow{err}
	}
	return &checkedRow{row: t.Tx.QueryRow(ctx, sql, args...), t: t}
}

// SendBatch runs b in the lock's transaction.
func (t *lockTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if err := t.check(); err != nil {
		return errBatch{err}
	}
	return &checkedBatch{br: t.Tx.SendBatch(ctx, b), t: t}
}

// CopyFrom copies rows into a table in the lock's transaction.
func (t *lockTx) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	if err := t.check(); err != nil {
		return 0, err
	}
	n, err := t.Tx.CopyFrom(ctx, table, columns, src)
	t.after(err)
	return n, err
}

// Prepare prepares a statement on the lock's connection.
func (t *lockTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	sd, err := t.Tx.Prepare(ctx, name, sql)
	t.after(err)
	return sd, err
}

// Begin starts a pseudo nested transaction (a savepoint) inside the lock's
// transaction.
func (t *lockTx) Begin(ctx context.Context) (pgx.Tx, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	tx, err := t.Tx.Begin(ctx)
	t.after(err)
	return tx, err
}

type checkedRow struct {
	row pgx.Row
	t   *lockTx
}

func (r *checkedRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	r.t.after(err)
	return err
}

// checkedRows notices a connection that broke while rows were read: the
// error surfaces in Err, and in Close's reading of what is left.
type checkedRows struct {
	pgx.Rows
	t *lockTx
}

func (r *checkedRows) Close() {
	r.Rows.Close()
	r.t.after(r.Rows.Err())
}

func (r *checkedRows) Err() error {
	err := r.Rows.Err()
	r.t.after(err)
	return err
}

// checkedBatch notices a connection that broke while a batch ran.
type checkedBatch struct {
	br pgx.BatchResults
	t  *lockTx
}

func (b *checkedBatch) Exec() (pgconn.CommandTag, error) {
	tag, err := b.br.Exec()
	b.t.after(err)
	return tag, err
}

func (b *checkedBatch) Query() (pgx.Rows, error) {
	rows, err := b.br.Query()
	b.t.after(err)
	if err != nil {
		return rows, err
	}
	return &checkedRows{Rows: rows, t: b.t}, nil
}

func (b *checkedBatch) QueryRow() pgx.Row {
	return &checkedRow{row: b.br.QueryRow(), t: b.t}
}

func (b *checkedBatch) Close() error {
	err := b.br.Close()
	b.t.after(err)
	return err
}

func (b *checkedBatch) Tx() pgx.Tx { return b.br.Tx() }

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

type errBatch struct{ err error }

func (b errBatch) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, b.err }
func (b errBatch) Query() (pgx.Rows, error)         { return nil, b.err }
func (b errBatch) QueryRow() pgx.Row                { return errRow(b) }
func (b errBatch) Close() error                     { return b.err }
func (b errBatch) Tx() pgx.Tx                       { return nil }

// ctxKey carries the Lock in WithLock's context.
type ctxKey struct{}

// LockFromContext returns the Lock held around the context WithLock hands its
// function, and whether there is one. In transaction scope, its [Lock.Tx] is
// the transaction the function's writes go through, to commit or roll back
// with the lock.
func LockFromContext(ctx context.Context) (*Lock, bool) {
	l, ok := ctx.Value(ctxKey{}).(*Lock)
	return l, ok && l != nil
}
