package advisorylock_test

import (
	"context"
	"errors"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// Names: any bytes but none at all. A name is hashed in the client and never
// sent to the server, so NUL bytes and invalid UTF-8 are ordinary name bytes
// (KeyFromName: the SHA-256 of the name's bytes).
func TestNames_badInput(t *testing.T) {
	// Serial: runBadInput checks the whole process for leaked goroutines.
	var cases []badCase
	for _, n := range []struct{ label, name string }{
		{"1 MiB name", hugeName},
		{"NUL inside a name", "a\x00b"},
		{"a name that is one NUL", "\x00"},
		{"invalid UTF-8 name", "\xff\xfe\xfd"},
		{"a name of control characters and quotes", "'\";\n\r\t\\--"},
	} {
		cases = append(cases, badCase{name: n.label,
			run: func(t *testing.T, e *badEnv) []callResult {
				m := advisorylock.New(e.pool, n.name)
				if m.Name() != n.name {
					t.Error("Name() differs from the name given")
				}
				if m.Key() != npmKey(n.name) || m.Key() != advisorylock.KeyFromName(n.name) {
					t.Errorf("Key() = %v; want %v, the SHA-256 mapping of the bytes", m.Key(), npmKey(n.name))
				}
				if want := strconv.Quote(n.name); m.String() != want {
					t.Errorf("String() is not the quoted name")
				}
				return lockUnlock(t, m)
			}})
	}
	cases = append(cases, badCase{name: "a NUL does not end a name",
		run: func(t *testing.T, e *badEnv) []callResult {
			holdFor(t, e, "a\x00b")
			var rs []callResult
			for _, name := range []string{"a", "a\x00", "a\x00c"} {
				l, err := advisorylock.New(e.pool, name).TryLock(t.Context())
				rs = append(rs, callResult{"TryLock " + strconv.Quote(name), err})
				if err == nil {
					rs = append(rs, callResult{"Unlock", l.Unlock(t.Context())})
				}
			}
			_, err := advisorylock.New(e.pool, "a\x00b").TryLock(t.Context())
			if !errors.Is(err, advisorylock.ErrLocked) {
				t.Errorf("TryLock of the held name = %v; want ErrLocked", err)
			}
			return rs
		}})
	runBadInput(t, cases)
}

// Key sets with duplicate, overlapping or extreme entries.
func TestKeySets_badInput(t *testing.T) {
	// Serial: runBadInput checks the whole process for leaked goroutines.
	runBadInput(t, []badCase{
		{name: "NewSet: duplicate names count once",
			run: func(t *testing.T, e *badEnv) []callResult {
				m := advisorylock.NewSet(e.pool, []string{"a", "b", "a", "b", "a"})
				if n := len(m.Keys()); n != 2 {
					t.Errorf("%d keys; want 2", n)
				}
				l, err := m.TryLock(t.Context())
				if err != nil {
					return []callResult{{"TryLock", err}}
				}
				if n := len(pgtest.AdvisoryLockPIDs(t, e.pool, "granted")); n != 2 {
					t.Errorf("%d advisory locks granted; want 2", n)
				}
				return []callResult{{"TryLock", nil}, {"Unlock", l.Unlock(t.Context())}}
			}},
		{name: "NewSetWithKeys: duplicate keys count once",
			run: func(t *testing.T, e *badEnv) []callResult {
				k := advisorylock.PairKey(1, 2)
				m := advisorylock.NewSetWithKeys(e.pool, []advisorylock.Key{k, k, k})
				if ks := m.Keys(); len(ks) != 1 || ks[0] != k || m.Key() != k {
					t.Errorf("Keys() = %v; want [%v]", ks, k)
				}
				return lockUnlock(t, m)
			}},
		{name: "NewSetWithKeys: bigint 0 and pair (0,0) are two keys",
			run: func(t *testing.T, e *badEnv) []callResult {
				m := advisorylock.NewSetWithKeys(e.pool, []advisorylock.Key{advisorylock.PairKey(0, 0), {}, advisorylock.Int64Key(0)})
				if n := len(m.Keys()); n != 2 {
					t.Errorf("%d keys; want 2", n)
				}
				l, err := m.Lock(t.Context())
				if err != nil {
					return []callResult{{"Lock", err}}
				}
				if n := len(pgtest.AdvisoryLockPIDs(t, e.pool, "granted")); n != 2 {
					t.Errorf("%d advisory locks granted; want 2", n)
				}
				return []callResult{{"Unlock", l.Unlock(t.Context())}}
			}},
		{name: "NewSet: one name is the same lock as New's",
			run: func(t *testing.T, e *badEnv) []callResult {
				m := advisorylock.NewSet(e.pool, []string{"solo"})
				if m.Key() != advisorylock.KeyFromName("solo") {
					t.Errorf("Key() = %v; want KeyFromName(\"solo\")", m.Key())
				}
				holdFor(t, e, "solo")
				_, err := m.TryLock(t.Context())
				if !errors.Is(err, advisorylock.ErrLocked) {
					t.Errorf("TryLock = %v; want ErrLocked", err)
				}
				return []callResult{{"Key", nil}}
			}},
		{name: "a set overlapping a held one gets none of its keys", want: []error{advisorylock.ErrLocked},
			run: func(t *testing.T, e *badEnv) []callResult {
				held, err := advisorylock.NewSet(e.other, []string{"b", "c"}).Lock(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				defer held.Unlock(context.Background())
				m := advisorylock.NewSet(e.pool, []string{"a", "b"}, advisorylock.WithTimeout(50*time.Millisecond))
				_, tryErr := m.TryLock(t.Context())
				_, lockErr := m.Lock(t.Context())
				if !errors.Is(lockErr, context.DeadlineExceeded) {
					t.Errorf("Lock = %v; want a timeout", lockErr)
				}
				if n := len(pgtest.AdvisoryLockPIDs(t, e.pool, "granted")); n != 2 {
					t.Errorf("%d advisory locks granted; want the other set's 2", n)
				}
				return []callResult{{"TryLock", tryErr}}
			}},
		{name: "NewSet: MaxSetKeys names lock and unlock",
			run: func(t *testing.T, e *badEnv) []callResult {
				names := make([]string, advisorylock.MaxSetKeys)
				for i := range names {
					names[i] = "n" + strconv.Itoa(i)
				}
				var rs []callResult
				for _, scope := range scopes {
					m := advisorylock.NewSet(e.pool, names, scope.opt, advisorylock.WithTimeout(time.Minute))
					l, err := m.Lock(t.Context())
					if err != nil {
						return append(rs, callResult{"Lock", err})
					}
					rs = append(rs, callResult{"Unlock", l.Unlock(t.Context())})
					l, err = m.TryLock(t.Context())
					if err != nil {
						return append(rs, callResult{"TryLock", err})
					}
					rs = append(rs, callResult{"Unlock", l.Unlock(t.Context())})
				}
				return rs
			}},
	})
}

// Mutex.Holders of extreme keys, each held by another session.
func TestMutexHolders_badInput(t *testing.T) {
	// Serial: runBadInput checks the whole process for leaked goroutines.
	runBadInput(t, []badCase{
		{name: "extreme keys",
			run: func(t *testing.T, e *badEnv) []callResult {
				var rs []callResult
				for _, k := range []advisorylock.Key{{}, advisorylock.Int64Key(math.MinInt64), advisorylock.Int64Key(-1),
					advisorylock.PairKey(math.MinInt32, math.MaxInt32), advisorylock.PairKey(-1, -1)} {
					holder, err := advisorylock.NewWithKey(e.other, k).Lock(t.Context())
					if err != nil {
						t.Fatal(err)
					}
					hs, err := advisorylock.NewWithKey(e.pool, k).Holders(t.Context())
					if err == nil && (len(hs) != 1 || !hs[0].Granted || hs[0].Key != k) {
						t.Errorf("Holders of %v = %+v; want the one holder", k, hs)
					}
					rs = append(rs, callResult{"Holders " + k.String(), err}, callResult{"Unlock", holder.Unlock(t.Context())})
				}
				return rs
			}},
	})
}
