package semaphore

import (
	"strconv"

	"github.com/advisorylock/advisorylock"
)

// A semaphore's keys live in PostgreSQL's bigint key space, which never
// conflicts with the int4-pair space of named Mutexes: the semaphore called
// name never excludes, nor is excluded by, advisorylock.New(pool, name).

// base returns the 64 bits of the name's key ([advisorylock.KeyFromName]), k1
// high and k2 low: the queue's key, from which the slots' keys count up.
func base(name string) uint64 {
	k1, k2, _ := advisorylock.KeyFromName(name).Pair()
	return uint64(uint32(k1))<<32 | uint64(uint32(k2))
}

// QueueKey returns the key waiters of the semaphore called name queue on:
// the bigint whose high 32 bits are k1 and low 32 bits k2, where (k1, k2) is
// the name's key ([advisorylock.KeyFromName]). In pg_locks it shows as
// classid = k1 and objid = k2 (read as unsigned), as the name's Mutex does,
// but with objsubid = 1 where the Mutex has 2.
func QueueKey(name string) advisorylock.Key {
	return advisorylock.Int64Key(int64(base(name)))
}

// SlotKey returns the key of slot i (counted from 0) of the semaphore called
// name: QueueKey(name) + 1 + i, a bigint, computed modulo 2^64. In pg_locks it
// shows with objsubid = 1, classid = its high 32 bits and objid = its low 32
// bits: objid = k2 + 1 + i (modulo 2^32), and classid = k1 unless that sum
// carried. The key does not depend on the number of slots, so semaphores of
// one name share their first slots whatever their sizes (see [New]).
func SlotKey(name string, i int) advisorylock.Key {
	return advisorylock.Int64Key(int64(base(name) + 1 + uint64(i)))
}

// channel returns the notification channel of the semaphore whose queue key
// is b: releases are announced there (pg_notify). Digits and dots only, well
// under PostgreSQL's 63-byte limit on identifiers.
func channel(b uint64) string {
	return "advisorylock.semaphore." + strconv.FormatUint(b, 10)
}
