package election

import (
	"os"
	"strconv"
	"time"

	"github.com/advisorylock/advisorylock"
)

// Election defaults, used when the corresponding option is not given.
const (
	// DefaultLease is the lease of a leader when WithLease is not given:
	// three times [advisorylock.DefaultKeepalive].
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

// WithIdentity sets the candidate's identity, which others read as the
// leader's ([Candidate]) and which becomes the application_name of the
// Election's sessions; it should be unique among the candidates. The default
// is "host:pid" (the host name shortened to fit). PostgreSQL would truncate
// or mangle anything but 1 to 63 bytes of printable ASCII (space to tilde):
// other ids make every call fail with [advisorylock.ErrInvalidArgument].
func WithIdentity(id string) Option {
	return optionFunc(func(c *config) {
		if err := checkIdentity(id); err != nil {
			c.fail(err)
			return
		}
		c.identity = id
	})
}

// WithLease sets the leader's lease: the longest a leader whose network went
// silent keeps the election blocked. It believes it leads for at most two
// thirds of it (see the package documentation). The default is [DefaultLease]
// (9s). Zero turns the lease off: the server may then keep a vanished
// leader's lock for hours (its tcp_keepalives_* settings). Any other d below
// 100ms, or one above about 24.8 days (2^31-1 ms, the server's limit), makes
// every call fail with [advisorylock.ErrInvalidArgument].
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

// WithRetryDelay sets how long [Election.Run] waits, after a leadership ends
// or a campaign fails, before campaigning again. The default is
// [DefaultRetryDelay] (1s); zero campaigns again at once. A negative d makes
// every call fail with [advisorylock.ErrInvalidArgument].
func WithRetryDelay(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d < 0 {
			c.fail(invalid("WithRetryDelay(%v): negative duration", d))
			return
		}
		c.retryDelay = d
	})
}

// WithPollInterval sets how often [Election.Observe] asks the server who
// leads, which catches the changes no leader announces (a leader whose session
// ended with nobody waiting). The default is [DefaultPollInterval] (500ms). A
// d that is not positive makes every call fail with
// [advisorylock.ErrInvalidArgument].
func WithPollInterval(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d <= 0 {
			c.fail(invalid("WithPollInterval(%v): not positive", d))
			return
		}
		c.pollInterval = d
	})
}

// WithHooks adds hooks that observe the election lock, as
// [advisorylock.WithHooks] does for a Mutex: a campaign is an acquisition, a
// leadership a hold. Nil hooks are ignored.
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
