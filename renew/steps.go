package renew

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/kubeadm"
	"github.com/kbootstrap/kbootstrap/pki"
)

// What happens to one control plane during a renewal, in order. Every step
// prints its own progress lines; from "renew" on a failure restores the
// backup (rollback.go) and the run stops with the node serving again.
func (o Options) nodeSteps(r *nodeRun) []nodeStep {
	return []nodeStep{
		{name: "lock", run: r.takeLock},                      // lock.go: the node's lock, a stale one taken over
		{name: "still-due", run: r.stillDue},                 // audit again under the lock: renewed meanwhile?
		{name: "cluster-lock", run: r.takeClusterLock},       // clusterlock.go: one control plane of the cluster at a time
		{name: "etcd-healthy", run: r.etcdHealthy},           // health.go: every etcd member healthy first
		{name: "backup", run: r.takeBackup},                  // backup.go: /etc/kubernetes's PKI and kubeconfigs
		{name: "renew", run: r.renew, rollback: true},        // kubeadm certs renew
		{name: "restart", run: r.restartAll, rollback: true}, // restart.go: drain, static pods one at a time, health, undrain
		{name: "verify", run: r.verify, rollback: true},      // verify.go: the new certificates served, the audit clean
	}
}

// nodeStep is one named step of a control plane's renewal.
type nodeStep struct {
	name string
	run  func(ctx context.Context) error
	// rollback: a failure restores the backup.
	rollback bool
}

// nodeRun is the state of one control plane's renewal.
type nodeRun struct {
	o       Options
	t       *target
	lock    *lock
	cluster *clusterLock
	pre     *pki.Result // the audit under the lock, before any change
	archive string      // the backup archive on the node
	// restarted are the static pods the restart step began restarting:
	// the ones a rollback restarts.
	restarted []string
}

// renewNode runs the steps on t; on a failure after the backup it restores
// the backup and says so in the error.
func (o Options) renewNode(ctx context.Context, t *target) error {
	r := &nodeRun{o: o, t: t}
	defer r.unlock()
	changed := false // a step that rolls back has started
	for _, s := range o.nodeSteps(r) {
		err := r.mayGoOn(ctx, s)
		switch {
		case errors.Is(err, ErrLockLost):
			return fmt.Errorf("node %s: %w", t.name, err) // the node is the other run's now
		case err != nil && !changed:
			return fmt.Errorf("node %s: %w", t.name, err)
		case err == nil:
			changed = changed || s.rollback
			if err = s.run(ctx); err == nil {
				continue
			}
			if errors.Is(err, errSkipped) || !changed {
				return err
			}
		}
		// The rollback runs to its end whatever happens to the run's
		// context, bounded in time.
		cctx, cancel := cleanupContext(ctx, rollbackTimeout)
		rerr := r.rollback(cctx)
		cancel()
		if rerr != nil {
			return fmt.Errorf("node %s: %w; restoring the backup %s failed too: %w", t.name, err, r.archive, rerr)
		}
		return fmt.Errorf("node %s: %w; backup %s restored, the node serves again", t.name, err, r.archive)
	}
	return nil
}

// rollbackTimeout bounds a rollback that runs after the run was
// interrupted: the backup restored and four static pods restarted and
// gated on their health.
const rollbackTimeout = 15 * time.Minute

// cleanupContext is a context for putting a node back: not cancelled with
// ctx (an interrupt must not stop the cleanup halfway), bounded by d.
func cleanupContext(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), d)
}

// stillDue judges the node again under its lock: another run may have
// renewed it between the first audit and the lock.
func (r *nodeRun) stillDue(ctx context.Context) error {
	pre, err := r.o.audit(ctx, r.only(), -1)
	if err != nil {
		return fmt.Errorf("node %s: %w", r.t.name, err)
	}
	r.pre = pre
	limit := r.o.Now().Add(r.o.Within)
	for _, c := range pre.Certificates {
		if !c.ExternallyManaged && r.o.wanted(c.Name) && c.NotAfter.Before(limit) {
			return nil
		}
	}
	r.o.Status.Printf("%s: renewed meanwhile by another run: nothing expires within %s now", r.t.name, r.o.Within)
	return errSkipped
}

// renew runs kubeadm certs renew.
func (r *nodeRun) renew(ctx context.Context) error {
	for _, c := range r.o.kubeadmCmds() {
		if err := r.o.Status.Do(r.t.name+": "+c, func() error { _, err := r.t.n.Run(ctx, c); return err }); err != nil {
			return fmt.Errorf("%s: %w", c, err)
		}
	}
	return nil
}

// only limits an audit to this node (nil: the local node).
func (r *nodeRun) only() []inventory.Node {
	if r.o.Local != nil {
		return nil
	}
	return []inventory.Node{r.t.in}
}

// asideDir is where an earlier kbootstrap restarted a static pod by moving
// its manifest out and back: a manifest an interrupted run of that version
// left there is moved back (present, restore).
const asideDir = kubeadm.KubernetesDir + "/kbootstrap-aside"

// held checks the locks the run has taken so far.
func (r *nodeRun) held(ctx context.Context) error {
	if r.lock != nil {
		if err := r.lock.held(ctx); err != nil {
			return err
		}
	}
	if r.cluster != nil {
		return r.cluster.held()
	}
	return nil
}

// mayGoOn is asked before each step: an interrupted run (Ctrl-C, SIGTERM)
// goes no further, and a run whose lock another run took over stops before
// its next change, leaving the node to that run (ErrLockLost).
func (r *nodeRun) mayGoOn(ctx context.Context, s nodeStep) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted before %s: %w", s.name, err)
	}
	if err := r.held(ctx); err != nil {
		return fmt.Errorf("stopped before %s: %w", s.name, err)
	}
	return nil
}
