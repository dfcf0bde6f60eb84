package advisorylockslog_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/interleave"
	"github.com/advisorylock/advisorylock/internal/pgtest"
	advisorylockslog "github.com/advisorylock/advisorylock/slog"
)

// BenchmarkWithLock is an uncontended session-scoped locked section, on one
// pool and one lock:
//
//   - nohooks: no hooks, the floor of the ratios;
//   - slog-quiet: the Hook as it comes, on an enabled JSON logger: no wait and
//     no hold reaches its threshold, and nothing is logged;
//   - slog-disabled: thresholds of zero, so that every wait and every hold
//     is an event, on a logger that enables no level the events have;
//   - slog-enabled: the same thresholds on a JSON logger writing to
//     io.Discard: two records a section;
//   - interleaved: the four taking turns call by call (see package
//     interleave), reporting each one's median time per call and its ratio
//     to nohooks.
//
// Each case but interleaved reports its allocations per section.
func BenchmarkWithLock(b *testing.B) {
	pool := pgtest.NewPool(b, pgtest.Require(b).CreateDatabase(b), func(c *pgxpool.Config) { c.MaxConns = 2 })
	logger := func(level slog.Level) *slog.Logger {
		return slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: level}))
	}
	every := []advisorylockslog.Option{advisorylockslog.WithWaitThreshold(0), advisorylockslog.WithHoldThreshold(0)}
	ctx := context.Background()
	fn := func(context.Context) (int, error) { return 1, nil }
	section := func(name string, h ...advisorylock.Hook) interleave.Case {
		m := advisorylock.New(pool, "bench", advisorylock.WithHooks(h...))
		return interleave.Case{Name: name, Call: func() error {
			_, err := advisorylock.WithLock(ctx, m, fn)
			return err
		}}
	}
	interleave.Bench(b, []interleave.Case{
		section("nohooks"),
		section("slog-quiet", advisorylockslog.NewHook(logger(slog.LevelInfo))),
		section("slog-disabled", advisorylockslog.NewHook(logger(slog.LevelError+1), every...)),
		section("slog-enabled", advisorylockslog.NewHook(logger(slog.LevelInfo), every...)),
	}, nil)
}
