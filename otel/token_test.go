package advisorylockotel_test

import (
	"context"
	"errors"
	"testing"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/internal/pgtest"
	advisorylockotel "github.com/advisorylock/advisorylock/otel"
)

// A fenced lock's token is an attribute of its acquire and hold spans; a
// busy TryLock's span, and the spans of a lock without fencing, have none.
func TestHook_token(t *testing.T) {
	t.Parallel()
	tp, log := newTracing(t)
	pool := pgtest.NewPool(t, pgtest.Database(t))
	hook := advisorylockotel.NewHook(advisorylockotel.WithTracerProvider(tp))
	for _, scope := range []advisorylock.Option{advisorylock.PinConnection(), advisorylock.TransactionScope(), nil} {
		fenced := advisorylock.New(pool, "report", scope, advisorylock.WithFencing(), advisorylock.WithHooks(hook))
		tok, err := advisorylock.WithLock(t.Context(), fenced, func(ctx context.Context) (int64, error) {
			l, _ := advisorylock.LockFromContext(ctx)
			if _, err := fenced.TryLock(ctx); !errors.Is(err, advisorylock.ErrLocked) {
				return 0, err
			}
			return l.Token(), nil
		})
		if err != nil {
			t.Fatal(err)
		}
		acquires := log.await(t, advisorylockotel.AcquireSpanName, 2)
		hold := log.one(t, advisorylockotel.HoldSpanName)
		// The acquisition's span ends first, then the busy TryLock's.
		wantAttrs(t, acquires[0], advisorylockotel.OutcomeKey.String("acquired"), advisorylockotel.TokenKey.Int64(tok))
		wantAttrs(t, acquires[1], advisorylockotel.OutcomeKey.String("busy"))
		wantNoAttrs(t, acquires[1], advisorylockotel.TokenKey)
		wantAttrs(t, hold, advisorylockotel.TokenKey.Int64(tok))
		log.Reset()

		plain := advisorylock.New(pool, "report", scope, advisorylock.WithHooks(hook))
		if _, err := advisorylock.WithLock(t.Context(), plain, func(context.Context) (int, error) { return 0, nil }); err != nil {
			t.Fatal(err)
		}
		wantNoAttrs(t, log.one(t, advisorylockotel.AcquireSpanName), advisorylockotel.TokenKey)
		wantNoAttrs(t, log.one(t, advisorylockotel.HoldSpanName), advisorylockotel.TokenKey)
		log.Reset()
	}
}
