package advisorylock

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// A Holder is a session that holds or awaits an advisory lock, as the server
// sees it (pg_locks joined with pg_stat_activity).
type Holder struct {
	// PID is the server process of the session (pg_backend_pid()).
	PID int32
	// ApplicationName is the session's application_name: for a leader
	// election candidate, its identity.
	ApplicationName string
	// User is the session's database user.
	User string
	// ClientAddr is the client's IP address, or "" for a Unix socket.
	ClientAddr string
	// Mode is the requested mode.
	Mode Mode
	// Granted is true for a holder and false for a waiter.
	Granted bool
	// Since is, for a waiter, when its wait began; for a holder, when its
	// session last changed state, which for a session-scoped lock of this
	// package, idle while held, is when the lock was granted.
	Since time.Time
}

// holdersSQL lists the sessions holding or awaiting one advisory lock of the
// current database, holders first, then waiters in the order they came.
// pg_locks shows the key as two unsigned oids and a key-space marker.
const holdersSQL = `select l.pid, coalesce(a.application_name, ''), coalesce(a.usename::text, ''),
	coalesce(host(a.client_addr), ''), l.mode = 'ShareLock', l.granted, coalesce(l.waitstart, a.state_change, now())
from pg_catalog.pg_locks l left join pg_catalog.pg_stat_activity a on a.pid = l.pid
where l.locktype = 'advisory'
	and l.database = (select oid from pg_catalog.pg_database where datname = current_database())
	and l.classid::int8 = $1 and l.objid::int8 = $2 and l.objsubid = $3
order by l.granted desc, 7, l.pid`

// Holders lists the sessions that hold or await key in the database pool
// connects to, holders first. It blocks for one query and fails with the
// query's error, or with ErrNilPool. It needs PostgreSQL 14 or later.
func Holders(ctx context.Context, pool *pgxpool.Pool, key Key) ([]Holder, error) {
	if pool == nil {
		return nil, ErrNilPool
	}
	var classid, objid uint32
	subid := 1
	if key.pair {
		classid, objid, subid = uint32(key.k1), uint32(key.k2), 2
	} else {
		classid, objid = uint32(uint64(key.k)>>32), uint32(key.k)
	}
	rows, err := pool.Query(ctx, holdersSQL, int64(classid), int64(objid), subid)
	if err != nil {
		return nil, fmt.Errorf("advisorylock: holders of key %s: %w", key, err)
	}
	defer rows.Close()
	var hs []Holder
	for rows.Next() {
		var h Holder
		var shared bool
		if err := rows.Scan(&h.PID, &h.ApplicationName, &h.User, &h.ClientAddr, &shared, &h.Granted, &h.Since); err != nil {
			return nil, fmt.Errorf("advisorylock: holders of key %s: %w", key, err)
		}
		if shared {
			h.Mode = ModeShared
		}
		hs = append(hs, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("advisorylock: holders of key %s: %w", key, err)
	}
	return hs, nil
}

// Holders lists the sessions that hold or await m's lock, as the package
// function Holders does.
func (m *Mutex) Holders(ctx context.Context) ([]Holder, error) {
	if m == nil {
		return nil, ErrNilMutex
	}
	if m.err != nil {
		return nil, m.err
	}
	return Holders(ctx, m.pool, m.key)
}
