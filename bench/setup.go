package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// envConnectionString names the variable with the database to use instead of
// a throwaway server.
const envConnectionString = "PG_CONNECTION_STRING"

// database returns the DSN to benchmark against, how the server was had, and
// a function that stops the server if this run started it.
//
// The throwaway server is the test harness's (pgtest.Start), as the demo
// uses it: the installed PostgreSQL binaries (run as the postgres user when
// run as root) or else a postgres:15 container, on 127.0.0.1, with a
// parent-death signal so that even a run killed outright takes its server
// with it. Importing the library's internal package is allowed from this
// nested module, whose path lies under the library's.
func database(ctx context.Context, p *progress) (dsn, source string, stop func() error, err error) {
	if dsn := os.Getenv(envConnectionString); dsn != "" {
		p.say("using the database in %s", envConnectionString)
		return dsn, envConnectionString, func() error { return nil }, nil
	}
	p.say("%s is not set: starting a throwaway PostgreSQL", envConnectionString)
	start := time.Now()
	srv, err := pgtest.Start(ctx)
	if err != nil {
		return "", "", nil, err
	}
	p.say("PostgreSQL ready on %s:%d (%s) after %.1fs", srv.Host(), srv.Port(), srv.Kind(), time.Since(start).Seconds())
	return srv.DSN(), "throwaway server (" + srv.Kind() + ", internal/pgtest) on " + srv.Host(), srv.Stop, nil
}

// bench is one run: the database, the run's identity and what it must clean up.
type bench struct {
	cfg  config
	dsn  string
	p    *progress
	run  string // unique to the run: lock names, the migrate table
	base int64  // keys of the run are base+i

	mu      sync.Mutex
	closers []func()
}

func newBench(cfg config, dsn string, p *progress) *bench {
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		panic(err)
	}
	// Positive keys well away from 0 and from other tools' small numbers;
	// room above for every key the run uses.
	base := int64(binary.LittleEndian.Uint64(r[:])>>3) | 1<<59
	return &bench{cfg: cfg, dsn: dsn, p: p, run: hex.EncodeToString(r[:4]), base: base &^ 0xfffff}
}

// key returns the run's i-th bigint key.
func (b *bench) key(i int) int64 { return b.base + int64(i) }

// name returns a lock name unique to the run.
func (b *bench) name(what string) string { return "advisorylock-bench-" + b.run + "-" + what }

// migrateTable is the migrations table golang-migrate's driver creates; its
// lock key is derived from the database, schema and this name.
func (b *bench) migrateTable() string { return "advisorylock_bench_" + b.run }

// defer_ registers cleanup for the end of the run.
func (b *bench) defer_(f func()) {
	b.mu.Lock()
	b.closers = append(b.closers, f)
	b.mu.Unlock()
}

func (b *bench) close() {
	b.mu.Lock()
	cs := b.closers
	b.closers = nil
	b.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}

// pool returns a new pgxpool of at most maxConns connections, with every
// connection already open, so that no measurement pays for a connect.
func (b *bench) pool(ctx context.Context, maxConns int, app string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(b.dsn)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = int32(maxConns)
	cfg.ConnConfig.RuntimeParams["application_name"] = "bench " + app
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	conns := make([]*pgxpool.Conn, 0, maxConns)
	defer func() {
		for _, c := range conns {
			c.Release()
		}
	}()
	for range maxConns {
		c, err := pool.Acquire(ctx)
		if err != nil {
			pool.Close()
			return nil, err
		}
		conns = append(conns, c)
	}
	return pool, nil
}

// sqlDB returns a new database/sql pool on pgx's stdlib driver, as goose and
// golang-migrate are used, of at most maxConns connections, all open.
func (b *bench) sqlDB(ctx context.Context, maxConns int, app string) (*sql.DB, error) {
	cc, err := pgx.ParseConfig(b.dsn)
	if err != nil {
		return nil, err
	}
	cc.RuntimeParams["application_name"] = "bench " + app
	db := stdlib.OpenDB(*cc)
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	db.SetConnMaxIdleTime(0)
	db.SetConnMaxLifetime(0)
	conns := make([]*sql.Conn, 0, maxConns)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range maxConns {
		c, err := db.Conn(ctx)
		if err == nil {
			err = c.PingContext(ctx)
		}
		if err != nil {
			db.Close()
			return nil, err
		}
		conns = append(conns, c)
	}
	return db, nil
}

// conn returns a connection outside every pool, for observing.
func (b *bench) conn(ctx context.Context, app string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(b.dsn)
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams["application_name"] = "bench " + app
	return pgx.ConnectConfig(ctx, cfg)
}

// cleanupDatabase drops what the run created in the database.
func (b *bench) cleanupDatabase(ctx context.Context) error {
	c, err := b.conn(ctx, "cleanup")
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	_, err = c.Exec(ctx, "drop table if exists "+pgx.Identifier{b.migrateTable()}.Sanitize())
	return err
}

// errUnexpected is a lock call that answered what no correct run can.
var errUnexpected = errors.New("unexpected answer")

func unexpected(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUnexpected, fmt.Sprintf(format, args...))
}
