package semaphore

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// statements are a semaphore's SQL, made once in New. Its keys and channel
// are numbers and a quoted identifier of the package's making, written into
// the text: the head's statements go out by the simple query protocol, which
// takes no parameters, several to a round trip.
type statements struct {
	// look lists, as "k,l,…", the keys that pg_locks shows held or awaited
	// in the current database among those that share the semaphore's
	// classids, a held key as its bigint and an awaited one with a "w"
	// before it; held keys come first, those whose sessions last ran a
	// statement longest ago first (see parseLook). One row, one text column.
	look string
	// listen makes the session a listener on the channel, commits that, then
	// looks: a release announced after the look is delivered to the session.
	listen string
	// leave gives up the queue key if the session holds it, and listening.
	leave string
	// announce tells the listener of a release: pg_notify(channel, slot).
	announce string
	// queueKey is the queue key, for wait.
	queueKey int64
}

func newStatements(b uint64, n int, channelName string) statements {
	ch := pgx.Identifier{channelName}.Sanitize()
	// The keys b to b+n, modulo 2^64, have one or two classids (the high 32
	// bits): the second when the sum carries. pg_locks shows a bigint key as
	// two unsigned oids, whose bits the shift and or put back together.
	c1, c2 := strconv.FormatUint(b>>32, 10), strconv.FormatUint((b+uint64(n))>>32, 10)
	// A holder's session that last ran a statement longest ago most likely
	// took its slot longest ago: its lock statement is usually its last.
	// Slots held on one lock session look alike: one of them comes first.
	look := `select coalesce(pg_catalog.string_agg(case when l.granted then '' else 'w' end || ((l.classid::int8 << 32) | l.objid::int8)::text, ','
		order by l.granted desc, a.state_change nulls last), '')
	from pg_catalog.pg_locks l left join pg_catalog.pg_stat_activity a on a.pid = l.pid
	where l.locktype = 'advisory' and l.objsubid = 1 and l.classid::int8 in (` + c1 + `, ` + c2 + `)
		and l.database = (select oid from pg_catalog.pg_database where datname = pg_catalog.current_database())`
	classid, objid := strconv.FormatUint(b>>32, 10), strconv.FormatUint(b&0xffffffff, 10)
	return statements{
		look:   look,
		listen: "listen " + ch + "; commit; " + look,
		leave: `select count(pg_catalog.pg_advisory_unlock(` + strconv.FormatInt(int64(b), 10) + `::int8))
	from pg_catalog.pg_locks l
	where l.locktype = 'advisory' and l.pid = pg_catalog.pg_backend_pid() and l.granted
		and l.objsubid = 1 and l.classid::int8 = ` + classid + ` and l.objid::int8 = ` + objid + `; unlisten ` + ch,
		announce: "select pg_catalog.pg_notify($1, $2)",
		queueKey: int64(b),
	}
}

// wait returns the statement that waits in the server for the queue key on
// the session whose backend is pid, with idle_session_timeout set to lease
// for the session (it bounds the head's turn once the key is granted; the
// setting goes with the statement if the wait fails), and bounded by
// lock_timeout when bound > 0. It returns one row, the session's
// idle_session_timeout before, or none when the backend is not pid (a
// pooler): then it has locked nothing.
func (st *statements) wait(pid uint32, lease, bound time.Duration) string {
	var b strings.Builder
	b.WriteString("select pg_catalog.current_setting('idle_session_timeout'), pg_catalog.set_config('idle_session_timeout', '")
	b.WriteString(strconv.FormatInt(millis(lease), 10))
	b.WriteString("', false)")
	if bound > 0 {
		b.WriteString(", pg_catalog.set_config('lock_timeout', '")
		b.WriteString(strconv.FormatInt(millis(bound), 10))
		b.WriteString("', true)")
	}
	b.WriteString(", pg_catalog.pg_advisory_lock(")
	b.WriteString(strconv.FormatInt(st.queueKey, 10))
	b.WriteString("::int8) where pg_catalog.pg_backend_pid() = ")
	b.WriteString(strconv.FormatUint(uint64(pid), 10))
	return b.String()
}

// restore returns the statement that sets idle_session_timeout back to old,
// as current_setting gave it.
func restore(old string) (string, error) {
	for _, c := range old {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return "", errors.New("unexpected idle_session_timeout " + strconv.Quote(old))
		}
	}
	return "select pg_catalog.set_config('idle_session_timeout', '" + old + "', false)", nil
}

// maxLockTimeout is the largest lock_timeout (an int4 of milliseconds). Longer
// bounds are enforced by the client alone.
const maxLockTimeout = (1<<31 - 1) * time.Millisecond

// millis rounds d up to whole milliseconds, at least 1.
func millis(d time.Duration) int64 {
	return max(int64((d+time.Millisecond-1)/time.Millisecond), 1)
}

// A view is what look found: whether others queue, the free slots, in order,
// and the slot whose holder most likely took it first.
type view struct {
	queued bool
	free   []int
	oldest int // -1 when no slot is held
}

// parseLook reads look's answer for the semaphore whose queue key is b, of n
// slots.
func parseLook(text string, b uint64, n int) (view, error) {
	v := view{oldest: -1}
	busy := make([]bool, n+1)
	if text != "" {
		for _, f := range strings.Split(text, ",") {
			waiter := strings.HasPrefix(f, "w")
			k, err := strconv.ParseInt(strings.TrimPrefix(f, "w"), 10, 64)
			if err != nil {
				return view{}, errors.New("unexpected answer from pg_locks: " + strconv.Quote(text))
			}
			d := uint64(k) - b
			if d > uint64(n) {
				continue // not the semaphore's: another key of the same classid
			}
			busy[d] = true // the queue's key (0) or a slot's (1+i)
			if d > 0 && !waiter && v.oldest < 0 {
				v.oldest = int(d) - 1
			}
		}
	}
	for i := 1; i <= n; i++ {
		if !busy[i] {
			v.free = append(v.free, i-1)
		}
	}
	v.queued = busy[0]
	return v, nil
}
