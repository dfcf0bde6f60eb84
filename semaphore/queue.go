package semaphore

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// The goroutines of one process that wait for a slot of one semaphore (on
// one pool) queue here, first come first served, behind the one of them that
// waits in the server's queue or heads it: 200 waiting goroutines spend one
// pooled connection, not the pool. When the leader leaves, the next goroutine
// leads, and asks the server afresh: it queues there behind the other
// processes' waiters, so a process's goroutines take turns with the other
// processes rather than keep the head of the queue among themselves.

// queueID names a local queue: a semaphore's queue key on a pool.
type queueID struct {
	pool *pgxpool.Pool
	base uint64
}

// localQueues holds the local queues that have a leader. Its mu guards every
// localQueue's fields.
var localQueues = struct {
	mu sync.Mutex
	m  map[queueID]*localQueue
}{m: make(map[queueID]*localQueue)}

// localQueue is one semaphore's queue in this process.
type localQueue struct {
	id      queueID
	tickets []*ticket // the waiting goroutines but the leader, in arrival order
}

// A ticket is a waiting goroutine's place in a local queue. ready is closed
// when it leads.
type ticket struct {
	ready chan struct{}
}

// enterQueue returns once the calling goroutine leads id's local queue, or
// fails with ctx's error, or context.DeadlineExceeded once dl (if not zero)
// has passed. The leader must call leave.
func enterQueue(ctx context.Context, id queueID, dl time.Time) (*localQueue, error) {
	localQueues.mu.Lock()
	q, ok := localQueues.m[id]
	if !ok {
		q = &localQueue{id: id}
		localQueues.m[id] = q
		localQueues.mu.Unlock()
		return q, nil
	}
	t := &ticket{ready: make(chan struct{})}
	q.tickets = append(q.tickets, t)
	localQueues.mu.Unlock()

	var expired <-chan time.Time
	if !dl.IsZero() {
		timer := time.NewTimer(time.Until(dl))
		defer timer.Stop()
		expired = timer.C
	}
	var err error
	select {
	case <-t.ready:
		return q, nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-expired:
		err = context.DeadlineExceeded
	}
	localQueues.mu.Lock()
	select {
	case <-t.ready:
		// Made leader as it gave up: the next one leads instead.
		localQueues.mu.Unlock()
		q.leave()
		return nil, err
	default:
	}
	for i, o := range q.tickets {
		if o == t {
			q.tickets = append(q.tickets[:i], q.tickets[i+1:]...)
			break
		}
	}
	localQueues.mu.Unlock()
	return nil, err
}

// leave ends the leader's turn: the next goroutine in the queue leads, or
// the queue is gone.
func (q *localQueue) leave() {
	localQueues.mu.Lock()
	defer localQueues.mu.Unlock()
	if len(q.tickets) == 0 {
		delete(localQueues.m, q.id)
		return
	}
	t := q.tickets[0]
	q.tickets[0] = nil
	q.tickets = q.tickets[1:]
	close(t.ready)
}
