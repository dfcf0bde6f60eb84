package advisorylock

import (
	"context"

	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// A Holder is a session that holds or awaits an advisory lock, as the server
// sees it (pg_locks joined with pg_stat_activity).
type Holder struct {
	// Key is the lock's key: for a set, which of its keys this row is about.
	Key Key
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
	// Since is, for a waiter, when its wait began. For a holder: the server
	// does not record when a lock was granted. For a session-scoped lock of
	// this package, Since is when it was granted (its keepalive probe says
	// so); for a holder in a transaction (transaction scope), when the
	// transaction began, which is when the lock was asked for; for other
	// session-level holders, when the session last ran a statement. The
	// statement and transaction times are visible to superusers, members of
	// pg_read_all_stats and the session's own user; for others Since is the
	// time of the query.
	Since time.Time
}

// holdersSQL lists the sessions holding or awaiting the advisory locks of the
// current database whose keys are given as three arrays, holders first, then
// waiters in the order they came. pg_locks shows a key as two unsigned oids
// and a key-space marker: 1 for a bigint key, 2 for a pair of int4.
const holdersSQL = `select l.classid::int8, l.objid::int8, l.objsubid, l.pid, coalesce(a.application_name, ''),
	coalesce(a.usename::text, ''), coalesce(host(a.client_addr), ''), l.mode = 'ShareLock', l.granted,
	coalesce(l.waitstart, a.xact_start, case when a.state = 'idle' and starts_with(a.query, '` + probePrefix + `')
		then substring(a.query from ' ' || l.classid::int8 || ',' || l.objid::int8 || ',' || l.objsubid || '@([0-9T:.Z+-]+)')::timestamptz end,
		a.state_change, now())
from pg_catalog.pg_locks l left join pg_catalog.pg_stat_activity a on a.pid = l.pid
where l.locktype = 'advisory' and l.pid is not null
	and l.database = (select oid from pg_catalog.pg_database where datname = current_database())
	and (l.classid::int8, l.objid::int8, l.objsubid::int4) in (select * from unnest($1::int8[], $2::int8[], $3::int4[]))
order by l.granted desc, 10, l.pid`

// holders lists the sessions that hold or await any of keys in the database
// pool connects to, holders first.
func holders(ctx context.Context, pool *pgxpool.Pool, keys []Key) ([]Holder, error) {
	classids := make([]int64, len(keys))
	objids := make([]int64, len(keys))
	subids := make([]int32, len(keys))
	for i, k := range keys {
		var subid int
		classids[i], objids[i], subid = lockTag(k)
		subids[i] = int32(subid)
	}
	rows, err := pool.Query(ctx, holdersSQL, classids, objids, subids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var hs []Holder
	for rows.Next() {
		var h Holder
		var classid, objid int64
		var subid int32
		var shared bool
		if err := rows.Scan(&classid, &objid, &subid, &h.PID, &h.ApplicationName, &h.User, &h.ClientAddr,
			&shared, &h.Granted, &h.Since); err != nil {
			return nil, err
		}
		if subid == 2 {
			h.Key = PairKey(int32(uint32(classid)), int32(uint32(objid)))
		} else {
			h.Key = Int64Key(int64(uint64(classid)<<32 | uint64(objid)))
		}
		if shared {
			h.Mode = ModeShared
		}
		hs = append(hs, h)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return hs, nil
}

// Holders lists the sessions that hold or await m's lock (for a set, any of
// its keys) in the database m's pool connects to, holders first, then
// waiters in the order they came. It blocks for one query and fails with the
// query's error. It needs PostgreSQL 14 or later. A session that ends while
// the query runs may be listed without its application name, user and
// address.
func (m *Mutex) Holders(ctx context.Context) ([]Holder, error) {
	if m == nil {
		return nil, errNilMutex
	}
	if m.err != nil {
		return nil, m.errorf("holders", m.err)
	}
	hs, err := holders(ctx, m.pool, m.keys)
	if err != nil {
		return nil, m.errorf("holders", err)
	}
	return hs, nil
}
