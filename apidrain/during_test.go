package apidrain

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kbootstrap/kbootstrap/progress"
)

// TestDuring: the server is drained while f runs and back UP after it,
// whether f succeeds, fails or its context is cancelled meanwhile.
func TestDuring(t *testing.T) {
	boom := errors.New("kubeadm exited 1")
	for _, tc := range []struct {
		name   string
		f      func(cancel func()) error
		want   error
		cancel bool
	}{
		{"f succeeds", func(func()) error { return nil }, nil, false},
		{"f fails", func(func()) error { return boom }, boom, false},
		{"interrupted during f", func(cancel func()) error { cancel(); return context.Canceled }, context.Canceled, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lb1 := newLB("lb1")
			var out bytes.Buffer
			st := progress.NewStatus(&out, false, nil)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ran := false
			err := During(ctx, st, Options{Inventory: lbInventory("lb1"), Connector: connector{"lb1": lb1}, Name: "cp1", DrainWait: 100 * time.Millisecond}, func() error {
				ran = true
				lb1.mu.Lock()
				state := lb1.state["cp1"]
				lb1.mu.Unlock()
				if state != "MAINT" {
					t.Errorf("cp1 is %s on lb1 while f runs, want MAINT", state)
				}
				return tc.f(cancel)
			})
			st.Close()
			if !ran || !errors.Is(err, tc.want) {
				t.Errorf("During: ran %v, err %v, want %v", ran, err, tc.want)
			}
			if lb1.state["cp1"] != "UP" {
				t.Errorf("cp1 is %s on lb1 after During, want UP", lb1.state["cp1"])
			}
			for _, want := range []string{"cp1: draining the API server (haproxy's runtime API on lb1)", "cp1: undraining the API server"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("progress lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}
