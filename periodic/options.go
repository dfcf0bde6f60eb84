package periodic

import (
	"os"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/dbobject"
)

// DefaultSchema is the schema of the runs table when WithSchema is not given.
const DefaultSchema = "public"

// maxIdentityLen bounds an identity, which is stored with every run.
const maxIdentityLen = 200

// maxNameLen bounds a job name, the runs table's primary key.
const maxNameLen = 1000

// An Option configures a Job. Options are applied in order; a later option
// overrides an earlier one. A nil Option is ignored.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// config is the resolved configuration of a Job.
type config struct {
	schema      string
	identity    string
	minSpacing  time.Duration // 0: none
	maxRunTime  time.Duration // 0: none
	lockOptions []advisorylock.Option
	hooks       []Hook
	now         func() time.Time // the client's clock; see withClock
	err         error            // the first invalid option, reported by every call
}

func newConfig(opts []Option) config {
	c := config{schema: DefaultSchema, now: time.Now}
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	if c.identity == "" {
		c.identity = defaultIdentity()
	}
	return c
}

func (c *config) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

// WithSchema sets the schema of the runs table ([TableName]); the default is
// [DefaultSchema], "public". The schema must exist; the table is created in it
// on first use (see the package documentation). The name is used as given,
// quoted: "Jobs" and "jobs" are two schemas. A name that is empty, longer than
// 63 bytes (PostgreSQL would truncate it), not UTF-8 or holding a NUL byte
// makes every call fail with [advisorylock.ErrInvalidArgument].
func WithSchema(schema string) Option {
	return optionFunc(func(c *config) {
		if err := checkSchema(schema); err != nil {
			c.fail(err)
			return
		}
		c.schema = schema
	})
}

// WithIdentity sets who this process is in the runs table: the identity
// recorded with each run it starts, which [Job.Status] and withlock --status
// show. The default is "host:pid". An identity of more than 200 bytes, empty,
// not UTF-8 or holding control characters makes every call fail with
// [advisorylock.ErrInvalidArgument].
func WithIdentity(id string) Option {
	return optionFunc(func(c *config) {
		if err := checkText("identity", id, maxIdentityLen); err != nil {
			c.fail(err)
			return
		}
		c.identity = id
	})
}

// WithMinSpacing sets the least time between the starts of two runs, whatever
// became of the first: a run that failed, or whose process died, is retried
// no sooner than d after it started (ShedLock's lockAtLeastFor). The default,
// zero, retries a failed run at the next attempt. A negative d makes every
// call fail with [advisorylock.ErrInvalidArgument].
func WithMinSpacing(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d < 0 {
			c.fail(invalid("WithMinSpacing(%v): negative duration", d))
			return
		}
		c.minSpacing = d
	})
}

// WithMaxRunTime bounds a run of [Job.Run] and [Job.Tick]: fn's context ends
// d after the run started, with a cause matching [ErrMaxRunTime] (and
// [context.DeadlineExceeded]), and a run that returns after that does not
// count, even when fn returns nil. The lock is held until fn returns: a run
// that ignores its context still excludes the others. The default, zero, sets
// no bound. A negative d makes every call fail with
// [advisorylock.ErrInvalidArgument].
func WithMaxRunTime(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d < 0 {
			c.fail(invalid("WithMaxRunTime(%v): negative duration", d))
			return
		}
		c.maxRunTime = d
	})
}

// WithLockOptions sets options of the job's lock ([Job.Mutex]), which is
// held on lock sessions (advisorylock's default): such as
// [advisorylock.WithKeepalive] to notice a silent network sooner, or
// [advisorylock.WithSessionPool] to hold it on direct connections when the
// pool goes through a pooler. A lock in shared mode
// ([advisorylock.Shared]) would let runs overlap: it makes every call fail
// with [advisorylock.ErrInvalidArgument]. Another invalid lock option is the
// Mutex's to report: [Job.Run] and [Job.Tick] fail with its error, which
// matches [advisorylock.ErrInvalidArgument] too.
func WithLockOptions(opts ...advisorylock.Option) Option {
	return optionFunc(func(c *config) {
		c.lockOptions = append(c.lockOptions, opts...)
	})
}

// WithHooks adds hooks that observe each call of [Job.Run], including those
// [Job.Tick] makes. Hooks are called in the order given. Nil hooks are
// ignored.
func WithHooks(hooks ...Hook) Option {
	return optionFunc(func(c *config) {
		for _, h := range hooks {
			if h != nil {
				c.hooks = append(c.hooks, h)
			}
		}
	})
}

// withClock makes the Job read the client's clock from now. Tests use it to
// skew the clock of a replica: the package never compares the client's clock
// with the server's, so a skew must change nothing.
func withClock(now func() time.Time) Option {
	return optionFunc(func(c *config) {
		if now != nil {
			c.now = now
		}
	})
}

// checkSchema reports a schema name PostgreSQL would not keep as given.
func checkSchema(schema string) error {
	if err := dbobject.CheckSchema(schema); err != nil {
		return invalid("WithSchema(%q): %v", schema, err)
	}
	return nil
}

// checkText reports a text that is empty, longer than max bytes, not UTF-8,
// or that holds control characters (NUL among them, which a text column
// refuses).
func checkText(what, s string, max int) error {
	switch {
	case s == "":
		return invalid("empty %s", what)
	case len(s) > max:
		return invalid("%s of %d bytes; want at most %d", what, len(s), max)
	case !utf8.ValidString(s):
		return invalid("%s is not valid UTF-8", what)
	}
	for i, r := range s {
		if r < ' ' || r == 0x7f {
			return invalid("%s: byte %d is a control character (%#x)", what, i, r)
		}
	}
	return nil
}

// checkName reports a job name the runs table cannot key: empty, longer than
// 1000 bytes, not UTF-8, or holding a NUL byte.
func checkName(name string) error {
	switch {
	case name == "":
		return invalid("empty job name")
	case len(name) > maxNameLen:
		return invalid("job name of %d bytes; want at most %d", len(name), maxNameLen)
	case !utf8.ValidString(name):
		return invalid("job name is not valid UTF-8")
	}
	for i := 0; i < len(name); i++ {
		if name[i] == 0 {
			return invalid("job name holds a NUL byte")
		}
	}
	return nil
}

// defaultIdentity returns "host:pid".
func defaultIdentity() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	id := host + ":" + strconv.Itoa(os.Getpid())
	if checkText("identity", id, maxIdentityLen) != nil {
		return "unknown:" + strconv.Itoa(os.Getpid())
	}
	return id
}
