package pgtest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/ory/dockertest/v3"
	dc "github.com/ory/dockertest/v3/docker"
)

const (
	// dockerPingTimeout keeps the Docker path quick to fail where no engine
	// runs.
	dockerPingTimeout = time.Second
	dockerImage       = "postgres"
	dockerTag         = "15"
	dockerPort        = dc.Port("5432/tcp")
)

// dockerServer is a postgres:15 container started by the harness.
type dockerServer struct {
	pool     *dockertest.Pool
	resource *dockertest.Resource
	dsn      string

	mu      sync.Mutex
	stopped bool
}

// startDocker runs a postgres:15 container with a random password, its port
// published on loopback only, and waits for it to accept connections. It
// fails within dockerPingTimeout when no engine answers.
func startDocker(ctx context.Context) (*Server, error) {
	pool, err := dockertest.NewPool("")
	if err != nil {
		return nil, err
	}
	pingCtx, cancel := context.WithTimeout(ctx, dockerPingTimeout)
	err = pool.Client.PingWithContext(pingCtx)
	cancel()
	if err != nil {
		pool.Client.HTTPClient.CloseIdleConnections()
		return nil, fmt.Errorf("no Docker engine answers: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	password := newPassword()
	resource, err := pool.RunWithOptions(&dockertest.RunOptions{
		Repository: dockerImage,
		Tag:        dockerTag,
		Env: []string{
			"POSTGRES_PASSWORD=" + password,
			"POSTGRES_HOST_AUTH_METHOD=scram-sha-256",
			"POSTGRES_INITDB_ARGS=--auth-host=scram-sha-256",
		},
		Cmd: []string{"postgres",
			"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
			"-c", "max_connections=200", "-c", "max_wal_senders=4", "-c", "wal_level=replica"},
		// A fixed host port survives Restart.
		PortBindings: map[dc.Port][]dc.PortBinding{
			dockerPort: {{HostIP: loopback, HostPort: strconv.Itoa(port)}},
		},
	})
	if err != nil {
		pool.Client.HTTPClient.CloseIdleConnections()
		return nil, redactError(fmt.Errorf("run %s:%s: %w", dockerImage, dockerTag, err), password)
	}
	d := &dockerServer{pool: pool, resource: resource, dsn: superuserDSN(password, port)}
	if err := waitReady(ctx, d.dsn, nil); err != nil {
		return nil, errors.Join(redactError(err, password), d.stop())
	}
	return &Server{kind: kindDocker, host: loopback, port: port, password: password, dsn: d.dsn, own: d}, nil
}

// stop removes the container with its volumes.
func (d *dockerServer) stop() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return nil
	}
	d.stopped = true
	err := d.pool.Purge(d.resource)
	d.pool.Client.HTTPClient.CloseIdleConnections()
	return err
}

// restart shuts the server down fast (SIGINT to the container's postgres,
// since dockertest sets a stop signal that PostgreSQL ignores), waits for the
// container to exit and starts it again.
func (d *dockerServer) restart(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return errStopped
	}
	id := d.resource.Container.ID
	if err := d.pool.Client.KillContainer(dc.KillContainerOptions{ID: id, Signal: dc.SIGINT, Context: ctx}); err != nil {
		return err
	}
	if _, err := d.pool.Client.WaitContainerWithContext(id, ctx); err != nil {
		return err
	}
	if err := d.pool.Client.StartContainerWithContext(id, nil, ctx); err != nil {
		return err
	}
	return waitReady(ctx, d.dsn, nil)
}
