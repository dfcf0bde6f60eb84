package semaphore

import (
	"slices"
	"strconv"
	"testing"
)

// parseLook tells the semaphore's keys from the others pg_locks shows with
// the same classids, also when the slots' keys carry into the next classid.
func TestParseLook(t *testing.T) {
	t.Parallel()
	key := func(v uint64) string { return strconv.FormatInt(int64(v), 10) }
	carry := uint64(1)<<32 - 2 // the queue key's low half: slot 1 carries
	tests := []struct {
		name   string
		b      uint64
		n      int
		text   string
		queued bool
		free   []int
		oldest int
	}{
		{"nothing held", 1 << 40, 3, "", false, []int{0, 1, 2}, -1},
		{"queue and slot 1", 1 << 40, 3, key(1<<40) + "," + key(1<<40+2), true, []int{0, 2}, 1},
		{"oldest first, a waiter on slot 0", 1 << 40, 3, key(1<<40+3) + "," + key(1<<40+2) + ",w" + key(1<<40+1), false, nil, 2},
		{"a waiter alone", 1 << 40, 2, "w" + key(1<<40+1), false, []int{1}, -1},
		{"a key before and after", 1 << 40, 2, key(1<<40-1) + "," + key(1<<40+3), false, []int{0, 1}, -1},
		{"a duplicate", 7, 1, key(8) + "," + key(8), false, nil, 0},
		{"carry", carry, 3, key(carry+2) + "," + key(carry+3), false, []int{0}, 1},
		{"wrap around 2^64", ^uint64(0), 2, key(0) + "," + key(^uint64(0)), true, []int{1}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := parseLook(tt.text, tt.b, tt.n)
			if err != nil || v.queued != tt.queued || !slices.Equal(v.free, tt.free) || v.oldest != tt.oldest {
				t.Errorf("parseLook(%q) = %+v, %v; want %v, %v, %d", tt.text, v, err, tt.queued, tt.free, tt.oldest)
			}
		})
	}
	if _, err := parseLook("1,x", 1, 1); err == nil {
		t.Error("parseLook of a bad answer: no error")
	}
}
