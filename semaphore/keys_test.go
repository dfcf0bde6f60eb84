package semaphore_test

import (
	"context"
	"testing"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/semaphore"
)

// The keys follow the documented formula; the vectors were computed apart
// from the package (SHA-256 of the name, bytes 0..3 and 4..7 as little-endian
// int32 k1 and k2, then the bigint k1<<32 | k2, plus 1 + i for slot i).
func TestKeys_vectors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		queue, slot0 int64
	}{
		{"test-lock", -462951958344200853, -462951958344200852},
		{"partner-api", 4153583280550803700, 4153583280550803701},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := semaphore.QueueKey(tt.name); got != advisorylock.Int64Key(tt.queue) {
				t.Errorf("QueueKey(%q) = %v; want %d", tt.name, got, tt.queue)
			}
			for i := range 3 {
				if got, want := semaphore.SlotKey(tt.name, i), advisorylock.Int64Key(tt.slot0+int64(i)); got != want {
					t.Errorf("SlotKey(%q, %d) = %v; want %v", tt.name, i, got, want)
				}
			}
			s := semaphore.New(nil, tt.name, 3)
			if s.QueueKey() != semaphore.QueueKey(tt.name) || s.SlotKey(2) != semaphore.SlotKey(tt.name, 2) {
				t.Errorf("the Semaphore's keys differ from the package's")
			}
		})
	}
}

// In pg_locks the queue key shows with the classid and objid of the name's
// Mutex and objsubid 1, and slot i with objid + 1 + i; the semaphore and the
// Mutex of one name never exclude each other.
func TestKeys_inPgLocks(t *testing.T) {
	t.Parallel()
	dsn := testDB(t)
	pool := newPool(t, dsn)
	const name = "test-lock"
	mutex, err := advisorylock.New(newPool(t, dsn), name).Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { release(t, mutex) })
	s := semaphore.New(newPool(t, dsn), name, 3)
	for range 3 {
		mustLock(t, s)
	}
	rows, err := pool.Query(t.Context(), `select classid::int8, objid::int8, objsubid from pg_locks
		where locktype = 'advisory' and granted and database = (select oid from pg_database where datname = current_database())
		order by objsubid, objid`)
	if err != nil {
		t.Fatal(err)
	}
	type tag struct {
		classid, objid int64
		subid          int16
	}
	var got []tag
	for rows.Next() {
		var g tag
		if err := rows.Scan(&g.classid, &g.objid, &g.subid); err != nil {
			t.Fatal(err)
		}
		got = append(got, g)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	// "test-lock" is (-107789403, -1898803861): 4187177893 and 2396163435
	// as unsigned.
	want := []tag{{4187177893, 2396163436, 1}, {4187177893, 2396163437, 1}, {4187177893, 2396163438, 1}, {4187177893, 2396163435, 2}}
	if len(got) != len(want) {
		t.Fatalf("pg_locks rows %v; want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("pg_locks row %d = %v; want %v", i, got[i], want[i])
		}
	}
	// A waiter shows on the queue key, with the Mutex's numbers and objsubid 1.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	lockAsync(t, ctx, semaphore.New(newPool(t, dsn), name, 3))
	awaitLocks(t, pool, "classid::int8 = 4187177893 and objid::int8 = 2396163435 and objsubid = 1", 1)
}

// Any name gives distinct keys in the bigint space, and a channel name
// PostgreSQL keeps whole.
func FuzzKeys(f *testing.F) {
	for _, s := range []string{"", "test-lock", "日本語", "with\x00nul", "\"quoted\"", "a;drop table x"} {
		f.Add(s, 2)
	}
	f.Fuzz(func(t *testing.T, name string, i int) {
		i = (i%semaphore.MaxSlots + semaphore.MaxSlots) % semaphore.MaxSlots
		q, k := semaphore.QueueKey(name), semaphore.SlotKey(name, i)
		qv, ok1 := q.Int64()
		kv, ok2 := k.Int64()
		if !ok1 || !ok2 {
			t.Fatalf("keys %v, %v: want bigint keys", q, k)
		}
		if uint64(kv)-uint64(qv) != uint64(i)+1 {
			t.Fatalf("SlotKey(%q, %d) = %d; want QueueKey %d + %d", name, i, kv, qv, i+1)
		}
		if k == advisorylock.KeyFromName(name) || q == advisorylock.KeyFromName(name) {
			t.Fatalf("a semaphore key equals the Mutex's")
		}
	})
}
