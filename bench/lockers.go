package main

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	migratepgx "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	gooselock "github.com/pressly/goose/v3/lock"

	"github.com/advisorylock/advisorylock"
)

// The SQL of the raw-pgx floor: the cheapest correct session-level cycle is
// one round trip to lock and one to unlock, whose answer is checked (false
// means the session did not hold the lock).
const (
	sqlLock       = "select pg_advisory_lock($1)"
	sqlUnlock     = "select pg_advisory_unlock($1)"
	sqlXactLock   = "select pg_advisory_xact_lock($1)"
	sqlSelect1    = "select 1"
	gooseInterval = 1 // seconds: the shortest poll interval goose accepts
)

// rawLock takes key on a connection of pool, the way a careful hand-written
// caller would: the connection stays pinned until rawUnlock.
func rawLock(ctx context.Context, pool *pgxpool.Pool, key int64) (*pgxpool.Conn, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, sqlLock, key); err != nil {
		discard(conn)
		return nil, err
	}
	return conn, nil
}

// rawUnlock releases key and returns conn to the pool; when the release
// cannot be confirmed the connection is closed, which ends its session and
// so releases whatever it held.
func rawUnlock(ctx context.Context, conn *pgxpool.Conn, key int64) error {
	var ok bool
	if err := conn.QueryRow(ctx, sqlUnlock, key).Scan(&ok); err != nil || !ok {
		discard(conn)
		if err == nil {
			err = unexpected("pg_advisory_unlock(%d) returned false", key)
		}
		return err
	}
	conn.Release()
	return nil
}

// rawXactLock begins a transaction and takes key in it, in one round trip
// (one batch); rawXactUnlock commits it, which releases the lock.
func rawXactLock(ctx context.Context, pool *pgxpool.Pool, key int64) (*pgxpool.Conn, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	batch := &pgx.Batch{}
	batch.Queue("begin")
	batch.Queue(sqlXactLock, key)
	if err := conn.SendBatch(ctx, batch).Close(); err != nil {
		discard(conn)
		return nil, err
	}
	return conn, nil
}

func rawXactUnlock(ctx context.Context, conn *pgxpool.Conn) error {
	if _, err := conn.Exec(ctx, "commit"); err != nil {
		discard(conn)
		return err
	}
	conn.Release()
	return nil
}

// discard closes a pooled connection whose state is in doubt.
func discard(conn *pgxpool.Conn) {
	c := conn.Hijack()
	_ = c.Close(context.Background())
}

// runFunc takes one lock, calls inside while holding it and releases it.
type runFunc func(ctx context.Context, inside func()) error

// A locker is one contender set up on its own connections. bind returns the
// way to take the lock on key (done once per key, outside any measurement);
// close releases the connections.
type locker struct {
	bind  func(key int64) runFunc
	close func()
	pool  *pgxpool.Pool // the pgx pool, for the lockers that have one
}

// A contender is one way of locking.
type contender struct {
	id    string // short, for progress
	name  string // for the report
	scope string // "session" or "transaction": the floor it is compared with
	// newLocker sets the contender up on a pool of at most conns
	// connections (for golang-migrate, a driver on a dedicated connection).
	newLocker func(ctx context.Context, b *bench, conns int) (*locker, error)
	// polls marks a locker that waits by polling (goose): it has its own
	// budget in the hand-off measurement.
	polls bool
	// fixedKey marks a locker whose key is fixed per instance, and whose
	// instance pins a connection for its lifetime (golang-migrate): it cannot
	// lock arbitrary keys from a shared pool.
	fixedKey bool
}

// contenders returns the lockers the run compares, the floors first.
func (b *bench) contenders() []contender {
	var cs []contender
	for _, c := range contenders() {
		if b.cfg.runs(c.name, isFloor(c)) {
			cs = append(cs, c)
		}
	}
	return cs
}

// contenders returns every locker compared, the floors first.
func contenders() []contender {
	return []contender{
		{
			id: "raw", name: "raw pgx (floor): Acquire, pg_advisory_lock, pg_advisory_unlock, Release", scope: "session",
			newLocker: func(ctx context.Context, b *bench, conns int) (*locker, error) {
				pool, err := b.pool(ctx, conns, "raw")
				if err != nil {
					return nil, err
				}
				return &locker{pool: pool, close: pool.Close, bind: func(key int64) runFunc {
					return func(ctx context.Context, inside func()) error {
						conn, err := rawLock(ctx, pool, key)
						if err != nil {
							return err
						}
						inside()
						return rawUnlock(ctx, conn, key)
					}
				}}, nil
			},
		},
		{
			id: "raw-tx", name: "raw pgx, transaction (floor): Acquire, begin + pg_advisory_xact_lock (1 batch), commit, Release", scope: "transaction",
			newLocker: func(ctx context.Context, b *bench, conns int) (*locker, error) {
				pool, err := b.pool(ctx, conns, "raw-tx")
				if err != nil {
					return nil, err
				}
				return &locker{pool: pool, close: pool.Close, bind: func(key int64) runFunc {
					return func(ctx context.Context, inside func()) error {
						conn, err := rawXactLock(ctx, pool, key)
						if err != nil {
							return err
						}
						inside()
						return rawXactUnlock(ctx, conn)
					}
				}}, nil
			},
		},
		libContender("lib", "advisorylock: Mutex.Lock, Lock.Unlock (lock sessions)", "session", false),
		libContender("lib-pinned", "advisorylock: Mutex.Lock, Lock.Unlock, PinConnection", "session", false, advisorylock.PinConnection()),
		libContender("lib-withlock", "advisorylock: WithLock", "session", true),
		libContender("lib-tx", "advisorylock: WithLock, TransactionScope", "transaction", true, advisorylock.TransactionScope()),
		{
			id: "goose", name: fmt.Sprintf("goose: SessionLock, SessionUnlock (polls every %ds)", gooseInterval), scope: "session", polls: true,
			newLocker: func(ctx context.Context, b *bench, conns int) (*locker, error) {
				db, err := b.sqlDB(ctx, conns, "goose")
				if err != nil {
					return nil, err
				}
				return &locker{close: func() { db.Close() }, bind: func(key int64) runFunc {
					// The shortest poll interval goose allows, and as many
					// polls as its default budget (5 minutes) allows.
					lk, err := gooselock.NewPostgresSessionLocker(
						gooselock.WithLockID(key),
						gooselock.WithLockTimeout(gooseInterval, 300/gooseInterval),
						gooselock.WithUnlockTimeout(gooseInterval, 60/gooseInterval))
					if err != nil {
						panic(err) // the options are constants
					}
					return func(ctx context.Context, inside func()) error {
						// As goose's Provider does: a dedicated *sql.Conn for
						// the lock's lifetime.
						conn, err := db.Conn(ctx)
						if err != nil {
							return err
						}
						if err := lk.SessionLock(ctx, conn); err != nil {
							// Nothing is held: pg_try_advisory_lock said no,
							// or failed.
							return errors.Join(err, conn.Close())
						}
						inside()
						// The unlock runs even when ctx ends meanwhile: a
						// lock left on a pooled connection would stay held.
						err = lk.SessionUnlock(context.WithoutCancel(ctx), conn)
						if err != nil {
							_ = conn.Raw(badConn)
						}
						return errors.Join(err, conn.Close())
					}
				}}, nil
			},
		},
		{
			id: "migrate", name: "golang-migrate (pgx/v5 driver): Lock, Unlock", scope: "session", fixedKey: true,
			newLocker: func(ctx context.Context, b *bench, conns int) (*locker, error) {
				// The key is the driver's: derived from the database, schema
				// and migrations table names. The driver keeps one
				// connection of db for its lifetime.
				db, err := b.sqlDB(ctx, conns, "migrate")
				if err != nil {
					return nil, err
				}
				drv, err := migratepgx.WithInstance(db, &migratepgx.Config{MigrationsTable: b.migrateTable()})
				if err != nil {
					db.Close()
					return nil, err
				}
				return &locker{close: func() { drv.Close() }, bind: func(int64) runFunc {
					return func(_ context.Context, inside func()) error {
						if err := drv.Lock(); err != nil {
							return err
						}
						inside()
						return drv.Unlock()
					}
				}}, nil
			},
		},
	}
}

// libContender is advisorylock, with Lock/Unlock or WithLock, on a Mutex
// made once per key by NewWithKey.
func libContender(id, name, scope string, withLock bool, opts ...advisorylock.Option) contender {
	return contender{
		id: id, name: name, scope: scope,
		newLocker: func(ctx context.Context, b *bench, conns int) (*locker, error) {
			pool, err := b.pool(ctx, conns, id)
			if err != nil {
				return nil, err
			}
			return &locker{pool: pool, close: pool.Close, bind: func(key int64) runFunc {
				return libRun(advisorylock.NewWithKey(pool, advisorylock.Int64Key(key), opts...), withLock)
			}}, nil
		},
	}
}

// libRun is one locked section on m, by Lock and Unlock or by WithLock.
func libRun(m *advisorylock.Mutex, withLock bool) runFunc {
	if withLock {
		return func(ctx context.Context, inside func()) error {
			_, err := advisorylock.WithLock(ctx, m, func(context.Context) (struct{}, error) {
				inside()
				return struct{}{}, nil
			})
			return err
		}
	}
	return func(ctx context.Context, inside func()) error {
		l, err := m.Lock(ctx)
		if err != nil {
			return err
		}
		inside()
		return l.Unlock(ctx)
	}
}

// badConn, returned from sql.Conn.Raw, makes database/sql discard the
// connection instead of pooling it: its lock state is in doubt.
func badConn(any) error { return driver.ErrBadConn }
