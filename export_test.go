package advisorylock

import (
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// RacedGrants reports how many session-level locks of m were found held,
// and released, after acquisitions that reported failure.
func (m *Mutex) RacedGrants() int64 { return m.racedGrants.Load() }

// WithReleaseTimeout sets the bound on WithLock's release.
func WithReleaseTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) { c.releaseTimeout = d })
}

// Keys returns the Mutex's keys in locking order.
func (m *Mutex) Keys() []Key { return slices.Clone(m.keys) }

// Timeout returns the WithTimeout bound.
func (m *Mutex) Timeout() time.Duration { return m.cfg.timeout }

// NewSetWithKeys is NewSet for explicit keys.
func NewSetWithKeys(pool *pgxpool.Pool, keys []Key, opts ...Option) *Mutex {
	if len(keys) == 0 {
		m := newMutex(pool, []Key{{}}, opts)
		if m.err == nil {
			m.err = errEmptyName
		}
		return m
	}
	return newMutex(pool, keys, opts)
}

// IsPair reports whether k is a pair key.
func (k Key) IsPair() bool { return k.pair }
