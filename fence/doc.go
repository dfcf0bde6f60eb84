// Package fence is a fenced resource: a write that applies only when it
// carries a fencing token at least as new as the newest the resource has
// accepted, so that a lock holder that lost its lock without knowing it (a
// paused process, a network gone silent) cannot overwrite the work of the
// holder after it.
//
// Tokens come from locks taken with [advisorylock.WithFencing]
// ([advisorylock.Lock.Token]): a holder granted a lock after another always
// has the larger token. The holder passes its token with each write:
//
//	m := advisorylock.New(pool, "nightly-report", advisorylock.WithFencing())
//	report := fence.New(pool, "nightly-report")
//	_, err := advisorylock.WithLock(ctx, m, func(ctx context.Context) (struct{}, error) {
//		l, _ := advisorylock.LockFromContext(ctx)
//		body := buildReport(ctx) // long: the lock may be lost meanwhile
//		return struct{}{}, report.Write(ctx, l.Token(), func(ctx context.Context, tx pgx.Tx) error {
//			_, err := tx.Exec(ctx, "update reports set body = $1 where day = current_date", body)
//			return err
//		})
//	})
//	if errors.Is(err, fence.ErrStale) {
//		// a newer holder has written: this one's work is discarded
//	}
//
// [Resource.Write] runs the function in a transaction that first records the
// token as the resource's newest, and only if it is not older than the
// newest recorded: the write and the record commit together. The resource's
// database may be another than the lock's; what matters is that every
// writer of the resource goes through Write.
//
// # The table
//
// The newest token of each resource is a row of the table advisorylock_fence
// ([Table]), in the schema public unless [WithSchema] names another:
//
//	resource   text primary key                          -- the Resource's name
//	token      bigint not null check (token > 0)         -- the newest token accepted
//	updated_at timestamptz not null default now()        -- when it was accepted
//
// The first call of a process checks the table, and creates it if it is
// missing; two processes starting together create it once (the creation
// takes a transaction-level advisory lock first). The role needs USAGE on the
// schema and SELECT, INSERT and UPDATE on the table; to create it, CREATE on
// the schema. A role that lacks one gets an error matching
// [advisorylock.ErrPrivilege], a [*advisorylock.PrivilegeError] naming the
// role, the privilege and the object. A DBA can create the table ahead of
// time (here for the role app):
//
//	CREATE TABLE IF NOT EXISTS public.advisorylock_fence (
//		resource text PRIMARY KEY,
//		token bigint NOT NULL CHECK (token > 0),
//		updated_at timestamptz NOT NULL DEFAULT now()
//	);
//	GRANT USAGE ON SCHEMA public TO app;
//	GRANT SELECT, INSERT, UPDATE ON public.advisorylock_fence TO app;
//
// # Fencing a service of your own
//
// A service outside the database checks a token the same way: it keeps the
// newest token it has accepted for each resource, and refuses a write whose
// token is older, atomically with the write (a compare-and-set: under the
// same lock, or in the same transaction, as the write itself). Equal tokens
// are the same holder writing again. A client sends its token with each
// request (say, a header Fencing-Token: 42, or WITHLOCK_TOKEN from the
// withlock command); a refusal tells it that it has lost the lock. In SQL,
// the check is the statement Write runs:
//
//	INSERT INTO fence (resource, token) VALUES ($1, $2)
//	ON CONFLICT (resource) DO UPDATE SET token = excluded.token
//	WHERE fence.token <= excluded.token
//	RETURNING token  -- no row: stale, roll back
//
// Tokens of locks that share a name come from one sequence and so are
// ordered; tokens of two databases, or two fencing schemas, are not.
package fence
