package advisorylock

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/advisorylock/advisorylock/internal/interrupt"
)

// deadlineGrace is how long past its bound a wait may run before the client
// steps in (see internal/interrupt).
const deadlineGrace = interrupt.DeadlineGrace

// runInterruptible runs stmt on pg, bounded by ctx and, when bound > 0, by
// bound (which the statement also enforces in the server; the client steps
// in grace later), ending the wait by a cancel request rather than by closing
// the connection, which it closes only when the server does not answer (see
// internal/interrupt). It returns stmt's error and why the wait was
// interrupted, if it was: context.DeadlineExceeded for the bound, ctx's
// error for ctx; and only once any cancel request it sent is complete.
func runInterruptible(ctx context.Context, pg *pgconn.PgConn, bound, grace time.Duration, stmt func(context.Context) error) (err, interrupted error) {
	qctx := context.WithoutCancel(ctx)
	return interrupt.Run(ctx, bound, grace, pg.CancelRequest, func() { _ = pg.Conn().Close() },
		func() error { return stmt(qctx) })
}
