package semaphore

import (
	"context"

	"github.com/advisorylock/advisorylock"
)

// A Holder is a session that holds a slot of a semaphore, or waits for one, as
// the server sees it.
type Holder struct {
	// Holder is the session as [advisorylock.Mutex.Holders] shows it, for
	// the slot's key or, for a waiter, the queue key. Granted is true for a
	// slot's holder and false for a waiter, also for the head of the queue,
	// which holds the queue key.
	advisorylock.Holder
	// Slot is the slot held, from 0, or -1 for a waiter.
	Slot int
}

// Holders lists the sessions that hold a slot of s, by slot, then those that
// wait for one, in the order they will be served: the head of the queue
// first. Goroutines of one process queue in the process behind one of them,
// which alone shows. It blocks for one query per slot and one for the queue,
// so a hand-off between two of them may show a session twice or not at all,
// and fails with the first query's error. It needs PostgreSQL 14 or later.
func (s *Semaphore) Holders(ctx context.Context) ([]Holder, error) {
	if err := s.check("holders"); err != nil {
		return nil, err
	}
	var out []Holder
	for i, m := range s.slots {
		hs, err := m.Holders(ctx)
		if err != nil {
			return nil, s.relabel("holders", err)
		}
		for _, h := range hs {
			// A session awaiting a slot is the head of the queue, which waits
			// on the slot held longest, and shows below as the head.
			if h.Granted {
				out = append(out, Holder{Holder: h, Slot: i})
			}
		}
	}
	hs, err := s.queue.Holders(ctx)
	if err != nil {
		return nil, s.relabel("holders", err)
	}
	// The head holds the queue key, and Mutex.Holders lists holders first,
	// then waiters in the order they came.
	for _, h := range hs {
		h.Granted = false
		out = append(out, Holder{Holder: h, Slot: -1})
	}
	return out, nil
}
