// Package poll is kbootstrap's one way of waiting for a condition: a check
// called at an interval (k8s.io/apimachinery's wait) until it passes, the
// context ends or a timeout passes; the error names what was awaited and the
// check's last error.
package poll

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Until calls check at once, then every interval, until it returns nil; it
// gives up after timeout, with an error "what: not within timeout: <check's
// last error>" that wraps that last error, or when ctx ends, with one that
// wraps ctx's error.
func Until(ctx context.Context, timeout, interval time.Duration, what string, check func(context.Context) error) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, interval, timeout, true, func(ctx context.Context) (bool, error) {
		last = check(ctx)
		var stop *stopError
		if errors.As(last, &stop) {
			last = stop.err
			return false, stop
		}
		return last == nil, nil
	})
	if err == nil {
		return nil
	}
	if _, ok := err.(*stopError); ok {
		return fmt.Errorf("%s: %w", what, last)
	}
	if cerr := ctx.Err(); cerr != nil {
		// The caller's context ended (an interrupt, its own deadline), not
		// this wait's timeout.
		if last != nil && last != err {
			return fmt.Errorf("%s: %w (last: %v)", what, cerr, last)
		}
		return fmt.Errorf("%s: %w", what, cerr)
	}
	if last == nil {
		last = err
	}
	return fmt.Errorf("%s: not within %s: %w", what, timeout, last)
}

// Stop wraps an error that no later check can cure: Until returns it at
// once instead of waiting on.
func Stop(err error) error { return &stopError{err} }

type stopError struct{ err error }

func (e *stopError) Error() string { return e.err.Error() }
func (e *stopError) Unwrap() error { return e.err }
