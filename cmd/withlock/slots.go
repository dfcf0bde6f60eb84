package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/advisorylock/advisorylock"
	"github.com/advisorylock/advisorylock/semaphore"
)

// --slots N runs the command under a slot of the semaphore of N slots called
// by the lock name (package semaphore): at most N such commands run at once.

// slotsMaxConns sizes the pool with --slots: a waiter at the head of the
// queue uses one connection to listen, one to wait in the server on the slot
// held longest, and one to take a slot whose release was announced.
const slotsMaxConns = 3

// parseSlots parses --slots's value.
func parseSlots(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > semaphore.MaxSlots {
		return 0, usagef("--slots: %s is not a number from 1 to %d", quoteArg(v), semaphore.MaxSlots)
	}
	return n, nil
}

// checkSlots reports the options that --slots does not go with.
func checkSlots(o options) error {
	switch {
	case o.slots == 0:
		return nil
	case o.hasKey:
		return usagef("--slots takes a lock name, not --key: a semaphore's keys derive from its name")
	case o.shared:
		return usagef("--slots and -s/--shared: a slot is exclusive")
	case o.every > 0:
		return usagef("--slots and --every: a run per period is one command at a time")
	case o.fencing:
		return usagef("--slots and --fencing: a semaphore's slots, held together, have no fencing tokens")
	}
	return nil
}

// runSlots is run for --slots: the status of the semaphore, or the command
// under one of its slots.
func (a *app) runSlots(pool *pgxpool.Pool, path string) int {
	opts := []semaphore.Option{semaphore.WithSlotOptions(advisorylock.WithKeepalive(a.o.keepalive))}
	if !a.o.nonblock && a.o.timeout > 0 {
		opts = append(opts, semaphore.WithTimeout(a.o.timeout))
	}
	s := semaphore.New(pool, a.o.name, a.o.slots, opts...)
	a.sem = s
	if a.o.status {
		code := 0
		if sig := a.untilSignal(func(ctx context.Context) { code = a.slotStatus(ctx, pool, s) }); sig != nil {
			return signalStatus(sig)
		}
		return code
	}
	var l *advisorylock.Lock
	code := 0
	if sig := a.untilSignal(func(ctx context.Context) { l, code = a.acquireSlot(ctx, pool, s) }); sig != nil {
		if l != nil { // granted as the signal came
			_ = a.release(l)
		}
		a.verbosef("got %v while waiting for %s; not running the command", sig, s)
		return signalStatus(sig)
	}
	if l == nil {
		return code
	}
	return a.runLocked(l, path)
}

// acquireSlot connects and takes a slot of s, as acquire takes a lock.
func (a *app) acquireSlot(ctx context.Context, pool *pgxpool.Pool, s *semaphore.Semaphore) (*advisorylock.Lock, int) {
	if code := a.connect(ctx, pool); code != 0 || ctx.Err() != nil {
		return nil, code
	}
	start := time.Now()
	var l *advisorylock.Lock
	var err error
	if a.o.nonblock || a.o.verbose {
		l, err = s.TryLock(ctx)
		if !a.o.nonblock && errors.Is(err, advisorylock.ErrLocked) {
			a.say("waiting for a slot of %s, held by %s", s, a.describeSlotHolders(ctx, s))
			l, err = s.Lock(ctx)
		}
	} else {
		l, err = s.Lock(ctx)
	}
	switch {
	case err == nil:
		a.verbosef("acquired slot %d of %s after %v", s.Slot(l), s, roundDuration(time.Since(start)))
		return l, 0
	case ctx.Err() != nil:
		return nil, 0
	case errors.Is(err, advisorylock.ErrLocked):
		a.verbosef("every slot of %s is held, or others wait for one; not waiting (-n)", s)
		return nil, a.o.conflict
	case errors.Is(err, context.DeadlineExceeded):
		a.verbosef("timed out after %v waiting for a slot of %s (-w)", roundDuration(time.Since(start)), s)
		return nil, a.o.conflict
	default:
		a.say("cannot take a slot of %s: %s", s, describe(err))
		return nil, exitUnavailable
	}
}

// describeSlotHolders names the sessions holding s's slots, for -v.
func (a *app) describeSlotHolders(ctx context.Context, s *semaphore.Semaphore) string {
	hs, err := s.Holders(ctx)
	if err != nil {
		return "other sessions"
	}
	var parts []string
	for _, h := range hs {
		if !h.Granted {
			continue
		}
		p := fmt.Sprintf("backend pid %d", h.PID)
		if h.ApplicationName != "" {
			p += fmt.Sprintf(" (%s)", h.ApplicationName)
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return "other sessions, or queued behind other waiters"
	}
	return strings.Join(parts, ", ")
}

// slotStatus prints, on stdout, the holders of s's slots and its waiters, and
// returns the exit status: 0, or 69 when the database cannot say.
func (a *app) slotStatus(ctx context.Context, pool *pgxpool.Pool, s *semaphore.Semaphore) int {
	if code := a.connect(ctx, pool); code != 0 || ctx.Err() != nil {
		return code
	}
	hs, err := s.Holders(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return 0
		}
		a.say("cannot list the holders of %s: %s", s, describe(err))
		return exitUnavailable
	}
	var b strings.Builder
	writeSlotStatus(&b, s, hs, time.Now())
	os.Stdout.WriteString(b.String())
	return 0
}

// writeSlotStatus formats the holders and waiters of s, as of now:
//
//	semaphore "api" (3 slots; queue key 123): 2 of 3 slots held, 1 waiter
//	STATE    SLOT  PID   FOR    SINCE                     APPLICATION  USER      CLIENT
//	held     0     4242  12.3s  2025-06-01T10:00:00.123Z  withlock     postgres  127.0.0.1
//	waiting  -     4243  3.1s   ...
func writeSlotStatus(b *strings.Builder, s *semaphore.Semaphore, hs []semaphore.Holder, now time.Time) {
	held, waiting := 0, 0
	for _, h := range hs {
		if h.Granted {
			held++
		} else {
			waiting++
		}
	}
	fmt.Fprintf(b, "%s; queue key %v: %d of %d slots held, %s\n", strings.TrimSuffix(s.String(), ")"), s.QueueKey(),
		held, s.Slots(), plural(waiting, "waiter"))
	if len(hs) == 0 {
		return
	}
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STATE\tSLOT\tPID\tFOR\tSINCE\tAPPLICATION\tUSER\tCLIENT")
	for _, h := range hs {
		state, slot := "held", strconv.Itoa(h.Slot)
		if !h.Granted {
			state, slot = "waiting", "-"
		}
		client := h.ClientAddr
		if client == "" {
			client = "local"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%v\t%s\t%s\t%s\t%s\n", state, slot, h.PID,
			now.Sub(h.Since).Round(100*time.Millisecond), h.Since.Format("2006-01-02T15:04:05.000Z07:00"),
			orDash(h.ApplicationName), orDash(h.User), client)
	}
	tw.Flush()
}

// lockLabel names l in messages: its Mutex, or with --slots its slot.
func (a *app) lockLabel(l *advisorylock.Lock) fmt.Stringer {
	if a.sem != nil {
		return slotLabel{a.sem, a.sem.Slot(l)}
	}
	return l.Mutex()
}

// slotLabel names a slot of a semaphore: slot 2 of semaphore "api" (3 slots).
type slotLabel struct {
	s    *semaphore.Semaphore
	slot int
}

func (l slotLabel) String() string { return "slot " + strconv.Itoa(l.slot) + " of " + l.s.String() }
