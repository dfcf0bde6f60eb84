package election

import (
	"github.com/advisorylock/advisorylock"
	"os"
	"strconv"
	"time"
)

// Election defaults, used when the corresponding option is not given.
const (
	// DefaultLease is the lease of a leader when WithLease is not given:
	// three times advisorylock.DefaultKeepalive.
	DefaultLease = 3 * advisorylock.DefaultKeepalive
	// DefaultRetryDelay is how long Run waits before campaigning again when
	// WithRetryDelay is not given.
	DefaultRetryDelay = time.Second
	// DefaultPollInterval is how often an observer asks who leads when
	// WithPollInterval is not given.
	DefaultPollInterval = 500 * time.Millisecond
)

// maxIdentityLen is the longest application_name PostgreSQL keeps
// (NAMEDATALEN - 1); it silently truncates longer ones.
const maxIdentityLen = 63

// minLease is the shortest lease: the leader's first probe must reach the
// server within it, and a lock's watcher starts some 20-25ms after the grant
// (then probes every third of the lease).
const minLease = 100 * time.Millisecond

// maxLease is the longest lease: the server's idle_session_timeout is an int4
// of milliseconds.
const maxLease = (1<<31 - 1) * time.Millisecond

// An Option configures an Election. Options are applied in order; a later
// option overrides an earlier one. A nil Option is ignored.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// config is the resolved configuration of an Election.
type config struct {
	identity     string
	lease        time.Duration // 0: none
	retryDelay   time.Duration
	pollInterval time.Duration
	hooks        []advisorylock.Hook
	err          error // the first invalid option, reported by every call
}

func newConfig(opts []Option) config {
	c := config{
		lease:        DefaultLease,
		retryDelay:   DefaultRetryDelay,
		pollInterval: DefaultPollInterval,
	}
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	if c.identity == "" && c.err == nil {
		c.identity = defaultIdentity()
	}
	return c
}

func (c *config) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

// WithIdentity sets the candidate's identity, which other candidates and
// observers read as the leader's (Election.Leader, Election.Observe). It
// becomes the application_name of the Election's own database sessions, so it
// also shows in pg_stat_activity and the server's logs.
//
// PostgreSQL keeps at most 63 bytes of application_name and only printable
// ASCII, so id must be 1 to 63 bytes of printable ASCII (space to tilde);
// anything else makes every call of the Election fail with an error matching
// advisorylock.ErrInvalidArgument, rather than being mangled by the server. Identities
// should be unique among the candidates; the default is the host name and the
// process id, "host:pid" (the host name shortened to fit).
func WithIdentity(id string) Option {
	return optionFunc(func(c *config) {
		if err := checkIdentity(id); err != nil {
			c.fail(err)
			return
		}
		c.identity = id
	})
}

// WithLease sets the leader's lease: how long a leader whose network went
// silent can keep the election blocked.
//
// The leader probes its session every third of the lease (the lock's
// keepalive, see WithKeepalive) and treats its leadership as lost when a probe
// goes unanswered for another third: a silent network ends its leadership,
// as it sees it, within two thirds of the lease. The server ends a session
// that sent nothing for the whole lease (through the session's
// idle_session_timeout), which releases the lock so that another candidate
// can win. The old leader thus stops believing it leads about a third of a
// lease before anybody else can start, unless its process stalls for that
// long. Only idle sessions are timed out: a candidate waiting for the lock
// is not.
//
// The default is DefaultLease (9s). Zero turns both off: a silent network is
// then noticed only when the operating systems give up on the connection, and
// the server may keep a vanished leader's lock for hours (the server's
// tcp_keepalives_* settings). A negative d, or one below 100ms or above
// about 24.8 days (2^31-1 ms), makes every call of the Election fail with an
// error matching ErrInvalidArgument.
func WithLease(d time.Duration) Option {
	return optionFunc(func(c *config) {
		switch {
		case d < 0:
			c.fail(invalid("WithLease(%v): negative duration", d))
		case d > 0 && d < minLease:
			c.fail(invalid("WithLease(%v): below %v", d, minLease))
		case d > maxLease:
			c.fail(invalid("WithLease(%v): above %v (the server's idle_session_timeout)", d, maxLease))
		default:
			c.lease = d
		}
	})
}

// WithRetryDelay sets how long Run waits, after a leadership ends or a
// campaign fails, before campaigning again. The default is DefaultRetryDelay
// (1s); zero campaigns again at once. A negative d makes every call of the
// Election fail with advisorylock.ErrInvalidArgument.
func WithRetryDelay(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d < 0 {
			c.fail(invalid("WithRetryDelay(%v): negative duration", d))
			return
		}
		c.retryDelay = d
	})
}

// WithPollInterval sets how often Observe asks the server who leads. Leaders
// of this package announce themselves (NOTIFY), so an observer usually learns
// of a change within a round trip; polling catches what no announcement
// covers, such as a leader whose session ended with no other candidate
// waiting. The default is DefaultPollInterval (500ms). A d that is not
// positive makes every call of the Election fail with an error matching
// ErrInvalidArgument.
func WithPollInterval(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d <= 0 {
			c.fail(invalid("WithPollInterval(%v): not positive", d))
			return
		}
		c.pollInterval = d
	})
}

// WithHooks adds hooks that observe the election lock's acquisitions,
// holds and losses, as advisorylock.WithHooks does for a Mutex: a campaign is an
// acquisition, a leadership a hold. Nil hooks are ignored.
func WithHooks(hooks ...advisorylock.Hook) Option {
	return optionFunc(func(c *config) {
		for _, h := range hooks {
			if h != nil {
				c.hooks = append(c.hooks, h)
			}
		}
	})
}

// checkIdentity reports an identity PostgreSQL would not keep as given.
func checkIdentity(id string) error {
	if id == "" || len(id) > maxIdentityLen {
		return invalid("identity of %d bytes; want 1 to %d", len(id), maxIdentityLen)
	}
	for i := 0; i < len(id); i++ {
		if id[i] < ' ' || id[i] > '~' {
			return invalid("identity: byte %d (%#x) is not printable ASCII", i, id[i])
		}
	}
	return nil
}

// defaultIdentity returns "host:pid", the host name shortened so the whole
// fits in application_name and made printable ASCII.
func defaultIdentity() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	suffix := ":" + strconv.Itoa(os.Getpid())
	if len(host) > maxIdentityLen-len(suffix) {
		host = host[:maxIdentityLen-len(suffix)]
	}
	b := []byte(host)
	for i, c := range b {
		if c < ' ' || c > '~' {
			b[i] = '?'
		}
	}
	return string(b) + suffix
}
