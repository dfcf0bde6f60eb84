package main

import (
	"context"
	"os"
	"time"

	"github.com/advisorylock/advisorylock/internal/pgtest"
)

// EnvConnectionString names the variable with the database to use instead
// of a throwaway server.
const EnvConnectionString = "PG_CONNECTION_STRING"

// database returns the DSN of the database to run the demo in, and a
// function that stops the server if the demo started one.
//
// The throwaway server is the test harness's (pgtest.Start): the installed
// PostgreSQL binaries (run as the postgres user when the demo runs as root)
// or else a postgres:15 container, on 127.0.0.1 with a random password, and a
// parent-death signal so that even a demo killed outright takes its server
// with it. Reusing it keeps one tested way of starting servers in the module
// rather than two. pgtest imports package testing, which in a program adds no
// flags (they are registered by testing.Init, which only test binaries call).
func (d *demo) database(ctx context.Context) (dsn string, stop func() error, err error) {
	if dsn := os.Getenv(EnvConnectionString); dsn != "" {
		d.tl.say("using the database in %s", EnvConnectionString)
		return dsn, func() error { return nil }, nil
	}
	d.tl.say("%s is not set: starting a throwaway PostgreSQL", EnvConnectionString)
	start := time.Now()
	srv, err := pgtest.Start(ctx)
	if err != nil {
		return "", nil, err
	}
	d.tl.say("PostgreSQL ready on %s:%d (%s) after %.1fs", srv.Host(), srv.Port(), srv.Kind(), time.Since(start).Seconds())
	return srv.DSN(), srv.Stop, nil
}
