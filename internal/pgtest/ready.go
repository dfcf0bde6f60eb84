package pgtest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// readyTimeout bounds the wait for a starting server.
	readyTimeout = 30 * time.Second
	// pollInterval spaces the connection attempts to a starting server.
	pollInterval = 20 * time.Millisecond
	// attemptTimeout bounds one connection attempt.
	attemptTimeout = 2 * time.Second
)

// errExited reports a server process that ended before accepting connections.
var errExited = errors.New("server process exited before accepting connections")

// waitReady polls the server at dsn until SELECT 1 succeeds. It gives up when
// exited is closed (a nil channel never is), after readyTimeout, or when ctx
// ends.
func waitReady(ctx context.Context, dsn string, exited <-chan struct{}) error {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		last := ping(ctx, cfg)
		if last == nil {
			return nil
		}
		select {
		case <-exited:
			return errExited
		case <-ctx.Done():
			return fmt.Errorf("server not ready: %w (last attempt: %v)", ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// ping connects with cfg and runs SELECT 1.
func ping(ctx context.Context, cfg *pgx.ConnConfig) error {
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "SELECT 1")
	return err
}
