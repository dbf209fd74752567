package functions

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iapguard/iapguard/pkg/iapsetup"
)

func TestCoalescerSharesOnlyRunsThatSawTheChange(t *testing.T) {
	c := &coalescer{now: time.Now}
	var runs atomic.Int32
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	fn := func(bool) (any, error) {
		n := runs.Add(1)
		started <- struct{}{}
		<-release
		return n, nil
	}
	ctx := context.Background()

	// First run starts; an event whose change happened earlier joins it.
	before := time.Now().Add(-time.Second)
	var wg sync.WaitGroup
	results := make([]any, 3)
	wg.Add(1)
	go func() { defer wg.Done(); results[0], _, _ = c.do(ctx, "k", before, fn) }()
	<-started
	wg.Add(1)
	go func() { defer wg.Done(); results[1], _, _ = c.do(ctx, "k", before, fn) }()
	// An event whose change happened after the first run started must not
	// share it: it waits and triggers a second run.
	time.Sleep(5 * time.Millisecond)
	after := time.Now()
	wg.Add(1)
	go func() { defer wg.Done(); results[2], _, _ = c.do(ctx, "k", after, fn) }()
	time.Sleep(5 * time.Millisecond)
	release <- struct{}{} // end run 1
	<-started             // run 2 starts
	close(release)
	wg.Wait()

	if got := runs.Load(); got != 2 {
		t.Fatalf("runs = %d, want 2 (one shared by the duplicates, one for the later change)", got)
	}
	if results[0] != int32(1) || results[1] != int32(1) {
		t.Errorf("early events got %v and %v, want run 1 for both", results[0], results[1])
	}
	if results[2] != int32(2) {
		t.Errorf("later event got %v, want run 2", results[2])
	}
}

func TestCoalescerHonoursContext(t *testing.T) {
	c := &coalescer{now: time.Now}
	block := make(chan struct{})
	defer close(block)
	go c.do(context.Background(), "k", time.Time{}, func(bool) (any, error) { <-block; return nil, nil })
	time.Sleep(5 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, err, _ := c.do(ctx, "k", time.Time{}, func(bool) (any, error) { return nil, nil })
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, iapsetup.ErrTransient) {
		t.Fatalf("do after its context ended = %v, want a transient error wrapping the deadline", err)
	}
}
