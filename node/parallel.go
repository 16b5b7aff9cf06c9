package node

import (
	"context"
	"errors"
	"strings"
	"sync"

	"github.com/kbootstrap/kbootstrap/inventory"
)

// NodeError is a failure on one node. Errors of a fan-out are joined
// NodeErrors, so errors.As finds each one and errors.Is still sees what each
// wraps.
type NodeError struct {
	Node string
	Err  error
}

func (e *NodeError) Error() string {
	msg := e.Err.Error()
	if strings.HasPrefix(msg, "node "+e.Node+": ") {
		return msg // already named, by the layer that failed
	}
	return "node " + e.Node + ": " + msg
}
func (e *NodeError) Unwrap() error { return e.Err }

// NodeErrors lists the NodeErrors inside err (joined or wrapped).
func NodeErrors(err error) []*NodeError {
	var out []*NodeError
	var walk func(error)
	walk = func(e error) {
		var ne *NodeError
		if errors.As(e, &ne) && e == error(ne) {
			out = append(out, ne)
			return
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	if err != nil {
		walk(err)
	}
	return out
}

// Parallel runs fn on every node, at most concurrency at a time (1 means one
// after the other; values < 1 mean 1). Every node runs whatever happens to
// the others; results come back in the order of nodes, and the error joins a
// *NodeError per failed node (nil when none failed).
func Parallel[T any](ctx context.Context, nodes []inventory.Node, concurrency int, fn func(ctx context.Context, n inventory.Node) (T, error)) ([]T, error) {
	if concurrency < 1 {
		concurrency = 1
	}
	results := make([]T, len(nodes))
	errs := make([]error, len(nodes))
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = &NodeError{Node: n.Name, Err: ctx.Err()}
				return
			}
			defer func() { <-sem }()
			r, err := fn(ctx, n)
			results[i] = r
			if err != nil {
				errs[i] = &NodeError{Node: n.Name, Err: err}
			}
		}()
	}
	wg.Wait()
	return results, errors.Join(errs...)
}
