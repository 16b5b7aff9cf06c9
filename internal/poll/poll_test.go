package poll

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	errNotYet := errors.New("not yet")
	for _, tc := range []struct {
		name     string
		passAt   int // the call that passes; 0: never
		ctx      func() (context.Context, context.CancelFunc)
		wantErr  string
		minCalls int
	}{
		{"passes at once", 1, nil, "", 1},
		{"passes on the third call", 3, nil, "", 3},
		{"times out with the last error", 0, nil, "thing: not within 300ms: not yet", 2},
		{"stopped", -1, nil, "thing: not yet", 1},
		{"the caller's context ends first", 0, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 120*time.Millisecond)
		}, "thing: context deadline exceeded (last: not yet)", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.Background(), func() {}
			if tc.ctx != nil {
				ctx, cancel = tc.ctx()
			}
			defer cancel()
			calls := 0
			err := Until(ctx, 300*time.Millisecond, 50*time.Millisecond, "thing", func(context.Context) error {
				calls++
				if calls == tc.passAt {
					return nil
				}
				if tc.passAt < 0 {
					return Stop(errNotYet)
				}
				return errNotYet
			})
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("err = %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			case tc.ctx != nil && !errors.Is(err, context.DeadlineExceeded):
				t.Fatalf("err = %v, want it to wrap the context's error", err)
			case tc.ctx == nil && tc.wantErr != "" && !errors.Is(err, errNotYet):
				t.Fatalf("err = %v, want it to wrap the check's error", err)
			}
			if tc.passAt < 0 && calls != 1 {
				t.Errorf("a stopped check was called %d times", calls)
			}
			if calls < tc.minCalls {
				t.Errorf("%d calls, want at least %d", calls, tc.minCalls)
			}
		})
	}
}
