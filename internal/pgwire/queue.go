package pgwire

// queue is a FIFO of requests, a ring buffer whose size is a power of two. Its
// zero value is an empty queue. It is not safe for concurrent use: Session
// guards it with its mutex.
type queue struct {
	buf  []*request
	head int // index of the oldest request
	n    int // number of requests queued
}

func (q *queue) len() int { return q.n }

func (q *queue) push(r *request) {
	if q.n == len(q.buf) {
		q.grow()
	}
	q.buf[(q.head+q.n)&(len(q.buf)-1)] = r
	q.n++
}

// peek returns the oldest request, or nil if q is empty.
func (q *queue) peek() *request {
	if q.n == 0 {
		return nil
	}
	return q.buf[q.head]
}

// pop removes and returns the oldest request, or returns nil if q is empty.
func (q *queue) pop() *request {
	if q.n == 0 {
		return nil
	}
	r := q.buf[q.head]
	q.buf[q.head] = nil
	q.head = (q.head + 1) & (len(q.buf) - 1)
	q.n--
	return r
}

// takeAll empties q and returns its requests, oldest first.
func (q *queue) takeAll() []*request {
	rs := make([]*request, 0, q.n)
	for r := q.pop(); r != nil; r = q.pop() {
		rs = append(rs, r)
	}
	return rs
}

func (q *queue) grow() {
	buf := make([]*request, max(16, 2*len(q.buf)))
	for i := range q.n {
		buf[i] = q.buf[(q.head+i)&(len(q.buf)-1)]
	}
	q.buf, q.head = buf, 0
}
