package semaphore

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
)

// MaxSlots is the most slots a semaphore may have.
const MaxSlots = 1000

// A Semaphore is a counted lock: at most its number of slots of holders, across
// every process that shares the database, hold one of its slots at a time. It
// is safe for concurrent use; each successful Lock or TryLock returns the
// [*advisorylock.Lock] of one slot, so two goroutines of one process count as
// two holders, just as two processes do. A Semaphore holds no state on the
// server and needs no closing. The zero Semaphore is not usable; create one
// with [New].
type Semaphore struct {
	pool    *pgxpool.Pool
	name    string
	n       int
	base    uint64 // QueueKey's 64 bits
	channel string // where releases are announced
	cfg     config
	err     error // bad input, reported by every call (see check)
	hooks   advisorylock.Hook
	// hold is hooks as a HoldHook and lost as a LostHook, or nil.
	hold  advisorylock.HoldHook
	lost  advisorylock.LostHook
	slots []*advisorylock.Mutex // slot i's Mutex, with a slotHook of its own
	queue *advisorylock.Mutex   // the queue key's Mutex: for hooks and Holders, never locked
	sql   statements
	// next picks the slot a fast acquisition tries first, so that the
	// processes and goroutines that take slots at once try different ones.
	next atomic.Uint32
}

// New returns a Semaphore of slots slots called name, on pool. Its keys are
// derived from the name ([QueueKey], [SlotKey]); every process using the
// semaphore must give it the same number of slots: one that gives more uses
// the extra slots too, so that the bound is then the largest number given.
// New does no I/O and never fails: an empty name, a nil pool, a number of
// slots outside 1 to [MaxSlots] or an invalid option is reported, as an error
// matching [advisorylock.ErrInvalidArgument], by every call on the Semaphore,
// before any round trip.
func New(pool *pgxpool.Pool, name string, slots int, opts ...Option) *Semaphore {
	s := &Semaphore{pool: pool, name: name, n: slots, cfg: newConfig(opts)}
	s.base = base(name)
	s.channel = channel(s.base)
	switch {
	case s.cfg.err != nil:
		s.err = s.cfg.err
	case pool == nil:
		s.err = invalid("nil pool")
	case name == "":
		s.err = invalid("empty semaphore name")
	case slots < 1 || slots > MaxSlots:
		s.err = invalid("%d slots; want 1 to %d", slots, MaxSlots)
	}
	if s.err != nil {
		return s
	}
	if s.err = checkSlotOptions(pool, name, s.cfg.slotOpts); s.err != nil {
		return s
	}
	if len(s.cfg.hooks) > 0 {
		s.hooks = advisorylock.MultiHook(s.cfg.hooks...)
		s.hold, _ = s.hooks.(advisorylock.HoldHook)
		s.lost, _ = s.hooks.(advisorylock.LostHook)
	}
	s.queue = advisorylock.NewWithKey(pool, QueueKey(name), s.cfg.slotOpts...)
	s.slots = make([]*advisorylock.Mutex, slots)
	for i := range s.slots {
		opts := append(s.cfg.slotOpts[:len(s.cfg.slotOpts):len(s.cfg.slotOpts)], advisorylock.WithHooks(&slotHook{s: s, slot: i}))
		s.slots[i] = advisorylock.NewWithKey(pool, SlotKey(name, i), opts...)
	}
	s.sql = newStatements(s.base, slots, s.channel)
	s.next.Store(rand.Uint32())
	return s
}

// checkSlotOptions reports slot options a semaphore cannot use: bad ones,
// as the Mutex reports them, and those that would make a slot shared or
// transaction-scoped. It does no I/O: a Mutex reports bad input before
// anything else, and a call with a context already done goes no further.
func checkSlotOptions(pool *pgxpool.Pool, name string, opts []advisorylock.Option) error {
	probe := advisorylock.NewWithKey(pool, SlotKey(name, 0), opts...)
	switch {
	case probe.Mode() != advisorylock.ModeExclusive:
		return invalid("WithSlotOptions: a slot is exclusive (Shared is not for semaphores)")
	case probe.Scope() != advisorylock.ScopeSession:
		return invalid("WithSlotOptions: a slot is session-scoped (TransactionScope is not for semaphores)")
	}
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := probe.Holders(done); errors.Is(err, advisorylock.ErrInvalidArgument) {
		return invalid("WithSlotOptions: %w", unlabel(err))
	}
	return nil
}

// Name returns the semaphore's name.
func (s *Semaphore) Name() string { return s.name }

// Slots returns the number of slots.
func (s *Semaphore) Slots() int { return s.n }

// QueueKey returns the key its waiters queue on: see the package function
// [QueueKey].
func (s *Semaphore) QueueKey() advisorylock.Key { return advisorylock.Int64Key(int64(s.base)) }

// SlotKey returns the key of slot i: see the package function [SlotKey].
func (s *Semaphore) SlotKey(i int) advisorylock.Key {
	return advisorylock.Int64Key(int64(s.base + 1 + uint64(i)))
}

// Slot returns which slot of s the lock l holds (or held), from 0, or -1 if
// l is not a lock of s.
func (s *Semaphore) Slot(l *advisorylock.Lock) int {
	if s == nil || l == nil || s.err != nil {
		return -1
	}
	v, ok := l.Mutex().Key().Int64()
	if i := uint64(v) - s.base - 1; ok && i < uint64(s.n) && s.slots[i] == l.Mutex() {
		return int(i)
	}
	return -1
}

// String describes the semaphore: its quoted name and its number of slots.
// It is safe on a nil Semaphore.
func (s *Semaphore) String() string {
	if s == nil {
		return "semaphore <nil>"
	}
	return "semaphore " + strconv.Quote(s.name) + " (" + strconv.Itoa(s.n) + " slots)"
}

// check reports, as an error of op, a nil Semaphore or bad input.
func (s *Semaphore) check(op string) error {
	if s == nil {
		return &advisorylock.Error{Op: op, Err: invalid("nil Semaphore")}
	}
	if s.err != nil {
		return s.errorf(op, s.err)
	}
	return nil
}

// errorf returns the error of op on s: errs in a row, most general first. Its
// text says "advisorylock: " once, however many of errs say it.
func (s *Semaphore) errorf(op string, errs ...error) error {
	err := errs[0]
	for _, e := range errs[1:] {
		err = joinCause(err, e)
	}
	return &advisorylock.Error{Op: op, Lock: "semaphore " + strconv.Quote(s.name), Err: err}
}

// relabel reports an error of a slot's or the queue's Mutex as one of op on
// s: the caller called the semaphore, not a Mutex of one of its keys.
func (s *Semaphore) relabel(op string, err error) error {
	return s.errorf(op, unlabel(err))
}

// unlabel returns the cause of an *advisorylock.Error, dropping the operation
// and lock it names.
func unlabel(err error) error {
	if lerr, ok := err.(*advisorylock.Error); ok && lerr.Err != nil {
		return lerr.Err
	}
	return err
}
