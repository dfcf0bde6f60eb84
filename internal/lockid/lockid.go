// Package lockid says how a lock is named in telemetry, for the otel and slog
// hooks alike: its key, always, and its name as a Policy says. Lock names can
// carry identifiers of customers or other people ("invoice-customer-4711"),
// which do not belong in a tracing backend or a log by default.
package lockid

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/advisorylock/advisorylock"
)

// Policy says how a lock's name appears in telemetry. The hooks export it as
// LockNamePolicy.
type Policy uint8

const (
	// Hashed (the default) records Hash(name) instead of the name.
	Hashed Policy = iota
	// Full records the name as it is, and leaves it in error texts.
	Full
	// Omitted records nothing of the name.
	Omitted
)

// String returns "hashed", "full" or "omitted".
func (p Policy) String() string {
	switch p {
	case Full:
		return "full"
	case Omitted:
		return "omitted"
	default:
		return "hashed"
	}
}

// Valid reports whether p is one of the policies.
func (p Policy) Valid() bool { return p <= Omitted }

// Hash returns the hash recorded for name under Hashed: the first 16
// hexadecimal digits of the SHA-256 of its UTF-8 bytes, as
// `printf %s "$name" | sha256sum | cut -c1-16` prints them.
func Hash(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:8])
}

// Name returns m's name as p renders it, and whether that is the name's hash
// rather than the name; "" when nothing of it is to be recorded (Omitted, or
// a Mutex with no name).
func Name(m *advisorylock.Mutex, p Policy) (name string, hashed bool) {
	if m.Name() == "" {
		return "", false
	}
	switch p {
	case Full:
		return m.Name(), false
	case Hashed:
		return hashOf(m), true
	default:
		return "", false
	}
}

// hashOf returns Hash(m.Name()) for a Mutex made by advisorylock.New, without
// hashing: the key of a named lock is made of the same first 8 bytes of the
// name's SHA-256 (see advisorylock.KeyFromName), little-endian int32 halves.
func hashOf(m *advisorylock.Mutex) string {
	k1, k2, ok := m.Key().Pair()
	if !ok {
		return Hash(m.Name())
	}
	var sum [8]byte
	binary.LittleEndian.PutUint32(sum[0:4], uint32(k1))
	binary.LittleEndian.PutUint32(sum[4:8], uint32(k2))
	return hex.EncodeToString(sum[:])
}

// Redact returns text, an error's text about m, with m's name replaced by its
// key unless p is Full. The package's errors name a lock as Mutex.String
// does: its quoted name.
func Redact(text string, m *advisorylock.Mutex, p Policy) string {
	if name := m.Name(); name != "" && p != Full {
		return strings.ReplaceAll(text, strconv.Quote(name), "key "+m.Key().String())
	}
	return text
}
