package advisorylockslog

// An Event is a kind of record the Hook logs. Its String is the record's
// message.
type Event uint8

const (
	// EventWait is a lock acquired, or a wait cancelled, after waiting at
	// least the wait threshold (WithWaitThreshold). Its level is info unless
	// set.
	EventWait Event = iota
	// EventTimeout is a wait that ran out: WithTimeout's bound or the
	// context's deadline passed. Its level is warn unless set.
	EventTimeout
	// EventHold is a lock released after being held at least the hold
	// threshold (WithHoldThreshold). Its level is info unless set.
	EventHold
	// EventLost is a lock lost while held. Its level is error unless set.
	EventLost
	// EventError is an acquisition or a release that failed otherwise. Its
	// level is error unless set.
	EventError
	// EventRetry is a wait that lost its connection before the grant (a
	// terminated backend, a restart, a failover) and starts again
	// (advisorylock.RetryHook). Its level is warn unless set.
	EventRetry

	numEvents
)

var messages = [numEvents]string{
	EventWait:    "advisorylock: long wait",
	EventTimeout: "advisorylock: timeout",
	EventHold:    "advisorylock: long hold",
	EventLost:    "advisorylock: lock lost",
	EventError:   "advisorylock: error",
	EventRetry:   "advisorylock: retry",
}

// String returns the message of e's records: "advisorylock: long wait",
// "advisorylock: timeout", "advisorylock: long hold", "advisorylock: lock
// lost", "advisorylock: error" or "advisorylock: retry".
func (e Event) String() string {
	if e < numEvents {
		return messages[e]
	}
	return "advisorylock: unknown event"
}
