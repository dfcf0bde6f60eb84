package periodic

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/advisorylock/advisorylock"
)

// statements are a Job's SQL, made once for its runs table. Every time in
// them is the server's: the client's clock never enters a comparison.
type statements struct {
	begin  string
	end    string
	status string
	held   string
}

func newStatements(table string) statements {
	r := strings.NewReplacer("{table}", table)
	return statements{
		begin:  r.Replace(strings.ReplaceAll(beginSQL, "{held}", held(5))),
		end:    r.Replace(strings.ReplaceAll(endSQL, "{held}", held(4))),
		status: r.Replace(strings.ReplaceAll(statusSQL, "{held}", heldByAnySQL(2))),
		held:   strings.ReplaceAll(heldNowSQL, "{held}", heldByAnySQL(1)),
	}
}

// held returns heldSQL with its parameters numbered from n: the process id,
// then the lock's tag (see lockTag).
func held(n int) string {
	return strings.NewReplacer(
		"$pid", "$"+strconv.Itoa(n), "$classid", "$"+strconv.Itoa(n+1),
		"$objid", "$"+strconv.Itoa(n+2), "$subid", "$"+strconv.Itoa(n+3),
	).Replace(heldSQL)
}

// heldSQL is true when the session with process id $pid holds the job's lock
// (granted, in this database): the lock the caller of Begin or End holds. A
// session that ended, or a lock released, no longer shows in pg_locks, so a
// lost lock is caught here even before its holder has noticed.
const heldSQL = `exists (select from pg_catalog.pg_locks
	where locktype = 'advisory' and granted and pid = $pid
		and database = (select oid from pg_catalog.pg_database where datname = pg_catalog.current_database())
		and classid::int8 = $classid and objid::int8 = $objid and objsubid = $subid)`

// beginSQL checks, under the job's lock, whether a run is due and if so
// records its start, in one statement: the check and the record cannot be
// told apart by anyone. A run is due when the last successful run started at
// least the period ago ($period, in microseconds) and the last run, of any
// outcome, at least the minimum spacing ago ($spacing). The run's number is
// the last one plus one: runs of a name are serialised by its lock, so the
// number is a fencing token. It returns the server's clock, whether the lock
// is held, the new run's number and start (null when not begun), and the
// record as it was before.
const beginSQL = `with prev as (
	select run, started_at, started_by, finished_at, failure,
		success_run, success_started_at, success_finished_at, success_by
	from {table} where name = $1
), held as (
	select {held} as held
), started as (
	insert into {table} as r (name, run, started_at, started_by)
	select $1, 1, pg_catalog.now(), $2 from held where held.held
	on conflict (name) do update
	set run = r.run + 1, started_at = excluded.started_at, started_by = excluded.started_by,
		finished_at = null, failure = null
	where (r.success_started_at is null
			or r.success_started_at <= excluded.started_at - $3::int8 * interval '1 microsecond')
		and ($4::int8 = 0 or r.started_at <= excluded.started_at - $4::int8 * interval '1 microsecond')
	returning r.run, r.started_at
)
select pg_catalog.now(), held.held, started.run, started.started_at,
	prev.run, prev.started_at, prev.started_by, prev.finished_at, prev.failure,
	prev.success_run, prev.success_started_at, prev.success_finished_at, prev.success_by
from held left join started on true left join prev on true`

// endSQL records how run $2 ended, while its lock is held: a success ($3
// null) only if the lock is still held by the session that began it;
// otherwise the run failed, with the reason $3 or "lock lost". A run that a
// later one superseded (its lock was lost, and another process began the
// next) is left alone: no row comes back.
const endSQL = `with held as (
	select {held} as held
)
update {table} as r set
	finished_at = pg_catalog.now(),
	failure = case when held.held then $3::text else coalesce($3::text, 'lock lost') end,
	success_run = case when $3::text is null and held.held then r.run else r.success_run end,
	success_started_at = case when $3::text is null and held.held then r.started_at else r.success_started_at end,
	success_finished_at = case when $3::text is null and held.held then pg_catalog.now() else r.success_finished_at end,
	success_by = case when $3::text is null and held.held then r.started_by else r.success_by end
from held
where r.name = $1 and r.run = $2 and r.finished_at is null
returning held.held and $3::text is null, r.finished_at`

// statusSQL reads the job's record, the server's clock, and whether anyone
// holds the job's lock now.
const statusSQL = `select pg_catalog.now(), {held},
	r.run, r.started_at, r.started_by, r.finished_at, r.failure,
	r.success_run, r.success_started_at, r.success_finished_at, r.success_by
from (select) one left join {table} r on r.name = $1`

// heldNowSQL is statusSQL for a database without the runs table.
const heldNowSQL = `select pg_catalog.now(), {held}`

// heldByAnySQL returns the condition that a session holds the job's lock,
// whose tag is in the parameters from n on (see lockTag).
func heldByAnySQL(n int) string {
	return fmt.Sprintf(`exists (select from pg_catalog.pg_locks
	where locktype = 'advisory' and granted
		and database = (select oid from pg_catalog.pg_database where datname = pg_catalog.current_database())
		and classid::int8 = $%d and objid::int8 = $%d and objsubid = $%d)`, n, n+1, n+2)
}

// lockTag returns how pg_locks shows key: classid, objid and objsubid.
func lockTag(k advisorylock.Key) (classid, objid int64, subid int32) {
	if k1, k2, ok := k.Pair(); ok {
		return int64(uint32(k1)), int64(uint32(k2)), 2
	}
	v, _ := k.Int64()
	return int64(uint32(uint64(v) >> 32)), int64(uint32(v)), 1
}
