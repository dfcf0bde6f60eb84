package advisorylock_test

import (
	"context"
	"fmt"
	"log"

	"github.com/advisorylock/advisorylock"
)

// Each holder of a fenced lock gets a token larger than every holder's
// before it; WithLock's function finds it through LockFromContext. A
// resource that refuses tokens older than the newest it has seen (package
// fence) is then safe from a holder that lost the lock without knowing it.
func ExampleWithFencing() {
	ctx := context.Background()
	pool := examplePool()
	defer pool.Close()

	m := advisorylock.New(pool, "example-fenced", advisorylock.WithFencing())
	token := func(ctx context.Context) (int64, error) {
		l, _ := advisorylock.LockFromContext(ctx)
		// ... send l.Token() with every write the section makes.
		return l.Token(), nil
	}
	first, err := advisorylock.WithLock(ctx, m, token)
	if err != nil {
		log.Fatal(err)
	}
	second, err := advisorylock.WithLock(ctx, m, token)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("the later holder's token is larger:", second > first)
	// Output: the later holder's token is larger: true
}
