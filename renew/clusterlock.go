package renew

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kbootstrap/kbootstrap/etcd"
)

// ClusterLockKey is the etcd lock every renewal holds while it changes a
// control plane, whichever run and whichever node: node locks keep two runs
// off one node, this keeps two runs (timers on two nodes, a timer and a run
// from the workstation) from restarting two control planes at once.
const ClusterLockKey = "/kbootstrap/certs-renew"

// clusterLock is a run's hold on ClusterLockKey, through the node's etcd
// client as its API server reaches etcd.
type clusterLock struct {
	cli *etcd.Client
	l   *etcd.Lock
}

// takeClusterLock is the "cluster-lock" step: the lease lives as long as
// StaleAfter (at least a minute) without a keepalive, so a dead run frees
// the cluster by itself.
func (r *nodeRun) takeClusterLock(ctx context.Context) error {
	st := r.o.Status.Start(r.t.name + ": cluster lock (etcd " + ClusterLockKey + ")")
	err := func() error {
		cli, err := apiServerEtcd(ctx, r.t.n)
		if err != nil {
			return err
		}
		l, err := cli.TryLock(ctx, ClusterLockKey, max(r.o.StaleAfter, time.Minute))
		if err != nil {
			cli.Close()
			if errors.Is(err, etcd.ErrLockHeld) {
				return fmt.Errorf("%w: another run is renewing a control plane of this cluster (%v): not overlapping it", ErrLocked, err)
			}
			return err
		}
		r.cluster = &clusterLock{cli: cli, l: l}
		return nil
	}()
	st.End(err)
	if err != nil {
		return fmt.Errorf("node %s: %w", r.t.name, err)
	}
	return nil
}

// held reports whether the lock's lease is still alive.
func (c *clusterLock) held() error {
	if c.l.Lost() {
		return fmt.Errorf("the cluster lock %s: %w", ClusterLockKey, ErrLockLost)
	}
	return nil
}

// release frees the cluster lock and closes its client.
func (c *clusterLock) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_ = c.l.Unlock(ctx)
	c.cli.Close()
}
