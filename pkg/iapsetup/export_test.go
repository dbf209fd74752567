package iapsetup

import (
	"context"
	"time"
)

// SetTestHooks replaces the reconciler's clock and its pause between
// retries (nil: keep the default). For this package's tests only.
func SetTestHooks(o *Options, now func() time.Time, sleep func(ctx context.Context, d time.Duration) error) {
	o.now, o.sleep = now, sleep
}
