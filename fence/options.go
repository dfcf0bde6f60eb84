package fence

import (
	"fmt"

	"github.com/advisorylock/advisorylock/internal/dbobject"
)

// An Option configures a Resource. Options are applied in order; a later
// option overrides an earlier one. A nil Option is ignored.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// config is the resolved configuration of a Resource.
type config struct {
	schema string
	err    error // the first invalid option, reported by every call
}

func newConfig(opts []Option) config {
	c := config{schema: DefaultSchema}
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	return c
}

// WithSchema keeps Table in schema rather than DefaultSchema. Every Resource
// that names one resource must name the same schema. An empty schema name,
// one longer than 63 bytes, or one that is not valid UTF-8 makes every call
// fail with advisorylock.ErrInvalidArgument.
func WithSchema(schema string) Option {
	return optionFunc(func(c *config) {
		if err := dbobject.CheckSchema(schema); err != nil {
			if c.err == nil {
				c.err = invalid(fmt.Sprintf("WithSchema(%q): %v", schema, err))
			}
			return
		}
		c.schema = schema
	})
}
