// Package poll is kbootstrap's one way of waiting for a condition: a check
// called at an interval (k8s.io/apimachinery's wait) until it passes, the
// context ends or a timeout passes; the error names what was awaited and the
// check's last error.
package poll

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Until calls check at once, then every interval, until it returns nil; it
// gives up after timeout or when ctx ends, with an error "what: not within
// timeout: <check's last error>" that wraps that last error.
func Until(ctx context.Context, timeout, interval time.Duration, what string, check func(context.Context) error) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, interval, timeout, true, func(ctx context.Context) (bool, error) {
		last = check(ctx)
		return last == nil, nil
	})
	if err == nil {
		return nil
	}
	if last == nil {
		last = err
	}
	return fmt.Errorf("%s: not within %s: %w", what, timeout, last)
}
