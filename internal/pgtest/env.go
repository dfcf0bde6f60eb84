package pgtest

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// envPingTimeout bounds the check that an external server answers.
const envPingTimeout = 10 * time.Second

// startEnv checks that the server at dsn answers and describes it.
func startEnv(ctx context.Context, dsn string) (*Server, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, envPingTimeout)
	defer cancel()
	if err := ping(ctx, cfg); err != nil {
		return nil, redactError(err, cfg.Password)
	}
	return &Server{
		kind:     kindEnv,
		host:     cfg.Host,
		port:     int(cfg.Port),
		password: cfg.Password,
		dsn:      dsn,
	}, nil
}
