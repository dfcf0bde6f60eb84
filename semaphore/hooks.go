package semaphore

import (
	"context"
	"strconv"
	"time"

	"github.com/advisorylock/advisorylock"
)

// announceTimeout bounds the announcement of a release.
const announceTimeout = 2 * time.Second

// slotHook is the hook of slot's Mutex: it announces each release of the
// slot to the head of the queue, and shows the semaphore's hooks (WithHooks)
// one acquisition per Lock or TryLock of the semaphore rather than one per
// slot tried.
//
// The semaphore calls its hooks' AcquireStart itself, with its queue's Mutex,
// before it looks at the slots, and AcquireEnd when it fails. When a slot is
// won, the slot's own hook calls are turned into the semaphore's: AcquireEnd
// (the slot's acquisition ended first, before the slot's Lock is returned,
// as the hook contract orders), and HoldStart with the whole wait and the
// semaphore's acquisition context. A slot tried and found busy is not shown.
type slotHook struct {
	s    *Semaphore
	slot int
}

var (
	_ advisorylock.Hook     = (*slotHook)(nil)
	_ advisorylock.HoldHook = (*slotHook)(nil)
	_ advisorylock.LostHook = (*slotHook)(nil)
)

// AcquireStart implements advisorylock.Hook: the semaphore reported the
// acquisition's start already.
func (h *slotHook) AcquireStart(ctx context.Context, _ *advisorylock.Mutex, _ advisorylock.AcquireStartData) context.Context {
	return ctx
}

// AcquireEnd implements advisorylock.Hook: the slot won first ends the
// semaphore's acquisition.
func (h *slotHook) AcquireEnd(ctx context.Context, _ *advisorylock.Mutex, data advisorylock.AcquireEndData) {
	a := acquisitionOf(ctx)
	if a == nil || data.Outcome != advisorylock.OutcomeAcquired || !a.win(data.Lock) || h.s.hooks == nil {
		return
	}
	a.mu.Lock()
	a.reported = true
	a.mu.Unlock()
	h.s.hooks.AcquireEnd(a.actx, h.s.queue, advisorylock.AcquireEndData{
		Outcome: advisorylock.OutcomeAcquired, Wait: time.Since(a.start), Lock: data.Lock})
}

// unseenKey marks the hold context of a slot won besides the acquisition's
// own, which is released unseen by the hooks.
type unseenKey struct{}

// HoldStart implements advisorylock.HoldHook. The context it returns is the
// hold's: WithLock's function runs on a context derived from it. It derives
// from the caller's context, not from the one the slot was tried on, which
// carries the acquisition's bound.
func (h *slotHook) HoldStart(ctx context.Context, l *advisorylock.Lock, data advisorylock.HoldStartData) context.Context {
	if a := acquisitionOf(ctx); a != nil {
		if a.winner() != l {
			return context.WithValue(a.caller, unseenKey{}, true)
		}
		ctx, data = a.caller, advisorylock.HoldStartData{Wait: time.Since(a.start), AcquireContext: a.actx}
	}
	if h.s.hold != nil {
		return h.s.hold.HoldStart(ctx, l, data)
	}
	return ctx
}

// HoldEnd implements advisorylock.HoldHook: the slot was released or lost,
// and the head of the queue is told, also when a hook panics.
func (h *slotHook) HoldEnd(ctx context.Context, l *advisorylock.Lock, data advisorylock.HoldEndData) {
	defer h.s.announce(h.slot)
	if h.s.hold != nil && ctx.Value(unseenKey{}) == nil {
		h.s.hold.HoldEnd(ctx, l, data)
	}
}

// LockLost implements advisorylock.LostHook.
func (h *slotHook) LockLost(ctx context.Context, l *advisorylock.Lock, data advisorylock.LostData) {
	if h.s.lost != nil && ctx.Value(unseenKey{}) == nil {
		h.s.lost.LockLost(ctx, l, data)
	}
}

// announce tells the head of the queue, if there is one, that slot was
// released: a notification on the semaphore's channel, sent on a pooled
// connection once the release is done, so that it never arrives before the
// slot is free. Its failure only delays the head until its next look.
func (s *Semaphore) announce(slot int) {
	ctx, cancel := context.WithTimeout(context.Background(), announceTimeout)
	defer cancel()
	_, _ = s.pool.Exec(ctx, s.sql.announce, s.channel, strconv.Itoa(slot))
}
