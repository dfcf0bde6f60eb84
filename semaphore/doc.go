// Package semaphore provides counted locks on PostgreSQL advisory locks: at
// most N holders of one name at a time, across every process that shares the
// database ("at most 3 workers call the rate-limited API at once"). It is
// built on the public API of package advisorylock: each slot is a
// [advisorylock.Mutex], and holding a slot is holding its [*advisorylock.Lock].
//
//	s := semaphore.New(pool, "partner-api", 3, semaphore.WithTimeout(time.Minute))
//	n, err := advisorylock.WithLock(ctx, s, func(ctx context.Context) (int, error) {
//		return callPartner(ctx) // ctx is cancelled if the slot is lost
//	})
//
// [advisorylock.WithLock] takes a Semaphore as it takes a Mutex (both are
// [advisorylock.Locker]s), with the same guarantees: the slot is released
// however the function ends, and the function's context carries the slot's
// Lock and is cancelled, with a cause matching [advisorylock.ErrLockLost],
// when the slot is lost. [Semaphore.Lock] and [Semaphore.TryLock] return the
// slot's Lock, released with its Unlock and watched with its Done and Err.
//
// # Keys
//
// A semaphore's keys are bigint advisory-lock keys, so that they never conflict
// with the int4-pair keys of named Mutexes, the semaphore called name included.
// With (k1, k2) the key of the name ([advisorylock.KeyFromName], SHA-256 based),
// the queue key ([QueueKey]) is the bigint whose high 32 bits are k1 and low
// 32 bits k2, and slot i, from 0, is that bigint plus 1 + i ([SlotKey], modulo
// 2^64). In pg_locks (locktype advisory, objsubid 1) the queue key shows as
// classid = k1 and objid = k2, read as unsigned (the name's Mutex shows the same
// numbers with objsubid 2), and slot i as classid = k1 and objid = k2 + 1 + i,
// unless the sum carries into classid. The keys do not depend on the number
// of slots: every process must give a semaphore the same number, as one that
// gives more uses the extra slots too.
//
// # Taking a slot, and waiting for one
//
// Lock first looks at the semaphore in pg_locks (one query): if a slot is free
// and nobody waits, it takes one (pg_try_advisory_lock, through the slot's
// Mutex), starting with a slot of its own choosing so that acquisitions at
// the same moment try different slots: two round trips. TryLock does the
// same, and fails with [advisorylock.ErrLocked] rather than wait; it does not
// jump the queue either.
//
// Otherwise Lock queues. The wait happens in the server: on a pooled
// connection of its own, in pg_advisory_lock on the queue key, which the
// server grants in the order the waiters asked. The holder of the queue key
// heads the queue, and it alone takes slots. Its session listens on the
// semaphore's channel (LISTEN), then looks at the slots. If none is free, it
// waits in the server, on a second connection, on the slot whose holder most
// likely took it first (the one whose session has been idle longest: its
// lock statement was usually its last; pg_stat_activity shows that of other
// roles' sessions only to superusers and members of pg_read_all_stats, and
// otherwise the head picks one of them), and meanwhile for a notification.
// Every release of a slot is announced on the channel (pg_notify, with the
// slot's number) by the process that releases it, once the server has freed
// the slot: [advisorylock.Lock.Unlock] of a slot costs two round trips, the
// unlock and the announcement. When the slot the head waits on is released,
// the server grants it to the head at once, as it grants a Mutex to its next
// waiter; when another is, the head takes it after its announcement (one
// round trip) and gives up its wait. Then it gives the queue key up, and the
// next waiter heads the queue. Nobody polls: between announcements the head
// sends one query per recheck interval, below. The head waits on a slot
// only when its pool can still give a connection to a slot announced.
//
// A hand-off, from the holder's Unlock to the waiter's Lock returning, costs
// about what a Mutex's costs when the head waited on the slot released (the
// unlock's round trip, the grant, and the waiter's work), and about three
// round trips otherwise: the unlock, the announcement, and the waiter taking
// the slot.
//
// Within one process, the goroutines waiting for one semaphore on one pool
// queue in the process behind one of them, which alone waits in the server:
// 200 waiting goroutines spend one pooled connection. When it leaves the
// queue, the next goroutine asks the server afresh, behind the other
// processes' waiters. Across processes the server's queue decides: waiters
// are served in the order they asked for the queue key, a process's local
// queue counting as one waiter.
//
// # Sessions that die
//
// A slot whose holder's session ends (a crash, a SIGKILL, a terminated
// backend, a restart) is freed by the server. If the head waits on it, the
// server grants it at once. When the holder's process notices the loss (see
// [advisorylock.WithKeepalive]) it announces it as a release. Otherwise the
// head finds the slot at its next look: it looks at the slots once per
// recheck interval ([WithRecheck], [DefaultRecheck] 1s) when no release is
// announced, so such a slot is taken within one interval of the server
// freeing it.
//
// The head of the queue holds it up while it heads it, so its session has a
// lease: the statement that waits for the queue key sets the session's
// idle_session_timeout to three recheck intervals (for the session; it is
// set back before the connection returns to the pool). The head's looks keep
// its session busy; a head whose process stops or whose network goes silent
// is ended by the server after three intervals, which frees the queue for
// the next waiter. Its wait on a slot is bounded by the same lease
// (lock_timeout, which the server enforces) and started again by a live
// head, so that a stopped head stops waiting there too: it can be granted a
// slot only within one lease of its last sign of life. A waiter whose process
// is stalled that long while heading the queue notices its session gone and
// queues again. The lease does not apply to a slot's holder: a slot held by
// a frozen process stays held until its session ends, as a Mutex's lock does
// (see the advisorylock package documentation on the window you must plan
// for).
//
// # Safety
//
// The server never grants one slot's key to two sessions, so at most N
// sessions hold a slot at any moment; which holder believes it holds one is
// the slot's Lock's business, as for any Lock: a lost slot closes Done and
// reports [advisorylock.ErrLockLost], and between the server freeing it and
// the holder noticing, another holder can start.
//
// # Hooks
//
// [WithHooks] adds hooks that see each Lock or TryLock as one acquisition
// (AcquireStart and AcquireEnd, with the semaphore's queue Mutex, the whole
// wait and its outcome; a TryLock that finds every slot taken is
// [advisorylock.OutcomeBusy]) and each slot held as one hold (HoldStart,
// HoldEnd and LockLost, with the slot's Lock). Slots tried and found busy on
// the way are not shown. The hooks of packages otel and slog work as they do
// for a Mutex.
//
// # What it uses in the database
//
// A semaphore creates no database object and needs no privilege beyond
// connecting: advisory locks on its keys, pg_locks (readable by every role),
// LISTEN and NOTIFY on the channel "advisorylock.semaphore.Q", where Q is the
// queue key as an unsigned decimal, and idle_session_timeout, which any role
// may set (PostgreSQL 14 or later). Connections, from the Semaphore's pool:
// none for a slot held, which is on a lock session (one each with
// [advisorylock.PinConnection] through [WithSlotOptions]); one per process
// while it waits in the queue; at the head, one listening (and one waiting
// on a slot with PinConnection) and one to take a slot announced, which it
// opens while it waits; and one for a moment to look at the slots or to
// announce a release.
//
// The waits and the head's session are session-level: behind a pooler in
// transaction mode (PgBouncer's pool_mode=transaction) Lock fails with
// [advisorylock.ErrPooler] and locks nothing; connect the Semaphore's pool to
// PostgreSQL directly. On a hot standby it fails with [advisorylock.ErrStandby].
//
// # Errors
//
// Every error is an [*advisorylock.Error] naming the call and the semaphore,
// with one prefix:
//
//	advisorylock: lock semaphore "partner-api": context deadline exceeded: …
//
// Match causes with [errors.Is]: [advisorylock.ErrLocked] from TryLock;
// [context.DeadlineExceeded] when [WithTimeout] or the context's deadline ran
// out, [context.Canceled] when the context was cancelled;
// [advisorylock.ErrPooler] and [advisorylock.ErrStandby] where semaphores
// cannot work; [advisorylock.ErrInvalidArgument] for bad input (an empty name,
// a nil pool or Semaphore, a number of slots outside 1 to [MaxSlots], an
// invalid option), which New accepts and every call then reports before any
// round trip. A slot's Lock reports its own errors, naming the slot's key, as
// any Lock does.
package semaphore
