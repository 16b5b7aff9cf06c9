package etcd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"
)

// ErrLockHeld is returned by TryLock when another session holds the lock.
var ErrLockHeld = errors.New("held by another session")

// Lock is a cluster-wide mutex held in etcd under a lease: it holds while
// its session's lease is kept alive, and goes by itself when the holder
// dies (the lease expires after its TTL). `etcdctl lock KEY` takes the same
// lock.
type Lock struct {
	key string
	s   *concurrency.Session
	m   *concurrency.Mutex
}

// TryLock takes the lock named key (a key prefix outside /registry) under a
// lease of ttl, or returns ErrLockHeld at once.
func (c *Client) TryLock(ctx context.Context, key string, ttl time.Duration) (*Lock, error) {
	secs := int(ttl / time.Second)
	if secs < 5 {
		secs = 5
	}
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	s, err := concurrency.NewSession(c.Client, concurrency.WithTTL(secs), concurrency.WithContext(context.WithoutCancel(ctx)))
	if err != nil {
		return nil, fmt.Errorf("node %s: etcd lock %s: session: %w", c.node, key, err)
	}
	m := concurrency.NewMutex(s, key)
	if err := m.TryLock(cctx); err != nil {
		s.Close()
		if errors.Is(err, concurrency.ErrLocked) {
			return nil, fmt.Errorf("etcd lock %s: %w", key, ErrLockHeld)
		}
		return nil, fmt.Errorf("node %s: etcd lock %s: %w", c.node, key, err)
	}
	return &Lock{key: key, s: s, m: m}, nil
}

// Lost reports whether the lock's lease is gone (expired, or its client
// closed): its holder must stop.
func (l *Lock) Lost() bool {
	select {
	case <-l.s.Done():
		return true
	default:
		return false
	}
}

// Unlock releases the lock and its lease.
func (l *Lock) Unlock(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	err := l.m.Unlock(ctx)
	return errors.Join(err, l.s.Close())
}
