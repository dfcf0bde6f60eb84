package advisorylock

import (
	"crypto/sha256"
	"encoding/binary"
	"strconv"
)

// Key identifies an advisory lock. PostgreSQL has two key spaces that never
// conflict with each other: one bigint, or a pair of int4. A Key is one of
// them. Keys are comparable and may be used as map keys.
//
// The zero Key is the bigint key 0.
type Key struct {
	pair   bool
	k1, k2 int32 // the pair, when pair is set
	k      int64 // the bigint, otherwise
}

// Int64Key returns the bigint key k, as taken by pg_advisory_lock(bigint).
// In pg_locks it shows as classid = the high 32 bits, objid = the low 32 bits,
// objsubid = 1.
func Int64Key(k int64) Key { return Key{k: k} }

// PairKey returns the key made of two int4 values, as taken by
// pg_advisory_lock(int4, int4). In pg_locks it shows as classid = k1,
// objid = k2, objsubid = 2.
func PairKey(k1, k2 int32) Key { return Key{pair: true, k1: k1, k2: k2} }

// KeyFromName maps a lock name to its key the way the npm package
// advisory-lock 2.x does, so that Go and Node.js processes naming the same
// lock exclude each other: the SHA-256 of the name's UTF-8 bytes, whose bytes
// 0..3 and 4..7, each read as a little-endian signed int32, form a PairKey.
// "test-lock" maps to PairKey(-107789403, -1898803861).
//
// Two different names share a key with probability 2^-64 per pair of names;
// with n names in use the odds of any collision are about n²/2^65 (one in
// 37 million for a million names). A collision makes two unrelated locks
// exclude each other; it never lets two holders of one lock in together.
func KeyFromName(name string) Key {
	sum := sha256.Sum256([]byte(name))
	return PairKey(
		int32(binary.LittleEndian.Uint32(sum[0:4])),
		int32(binary.LittleEndian.Uint32(sum[4:8])),
	)
}

// Pair returns the two int4 halves of a pair key. ok is false for a bigint key.
func (k Key) Pair() (k1, k2 int32, ok bool) { return k.k1, k.k2, k.pair }

// Int64 returns the bigint of a bigint key. ok is false for a pair key.
func (k Key) Int64() (v int64, ok bool) { return k.k, !k.pair }

// String formats k as "(k1,k2)" for a pair key and as the decimal bigint
// otherwise.
func (k Key) String() string {
	if k.pair {
		return "(" + strconv.FormatInt(int64(k.k1), 10) + "," + strconv.FormatInt(int64(k.k2), 10) + ")"
	}
	return strconv.FormatInt(k.k, 10)
}

// args returns the key as query arguments, in the order the SQL functions
// take them.
func (k Key) args() []any {
	if k.pair {
		return []any{k.k1, k.k2}
	}
	return []any{k.k}
}

// lockTag returns how pg_locks shows key: classid, objid and objsubid.
func lockTag(k Key) (classid, objid int64, subid int) {
	if k.pair {
		return int64(uint32(k.k1)), int64(uint32(k.k2)), 2
	}
	return int64(uint32(uint64(k.k) >> 32)), int64(uint32(k.k)), 1
}
