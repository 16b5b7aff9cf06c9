package renew

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"time"

	"github.com/kbootstrap/kbootstrap/etcd"
	"github.com/kbootstrap/kbootstrap/internal/poll"
	"github.com/kbootstrap/kbootstrap/kubeadm"
	"github.com/kbootstrap/kbootstrap/node"
)

// healthOrder is the order of the gate: etcd first (the API server's
// readiness depends on it), the API server, then the controller-manager and
// scheduler (which need it).
func healthOrder(cs []string) []string {
	var out []string
	for _, c := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		if slices.Contains(cs, c) {
			out = append(out, c)
		}
	}
	return out
}

// healthAll gates a node on all its components: etcd's member healthy, the
// API server ready (its readiness includes its etcd client), the
// controller-manager and scheduler healthy. An API server this run
// restarted whose etcd client still backs off after etcd's restart is
// restarted once more: the node is still drained, so no client sees it.
func (o Options) healthAll(ctx context.Context, t *target, cs []string, apiServerRestarted bool) error {
	for _, c := range cs {
		wait := o
		if c == "kube-apiserver" {
			wait.Timeout = min(o.Timeout, time.Minute)
		}
		err := wait.poll(ctx, c+" healthy", func(ctx context.Context) error { return health(ctx, t.n, c) })
		if err != nil && c == "kube-apiserver" && apiServerRestarted {
			o.Status.Printf("%s: kube-apiserver not ready within %s (%v): restarting it once more, still drained", t.name, wait.Timeout, err)
			err = o.restart(ctx, t, c)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// apiServerEtcd connects to etcd as n's kube-apiserver does, reading its
// flags and credentials again on every call (see etcd.ConnectAsAPIServer).
func apiServerEtcd(ctx context.Context, n node.Node, endpoints ...string) (*etcd.Client, error) {
	return etcd.ConnectAsAPIServer(ctx, n, etcd.ClientOptions{Timeout: 10 * time.Second, Endpoints: endpoints})
}

// clusterHealthy checks, through n with its kube-apiserver's credentials,
// that every etcd member is started, a voter, and answers its status without
// errors or alarms. A node without etcd (external etcd) passes.
func clusterHealthy(ctx context.Context, n node.Node) error {
	if _, err := n.Stat(ctx, kubeadm.EtcdManifest); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	c, err := apiServerEtcd(ctx, n)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Health(ctx)
}

// etcdMemberHealthy checks the node's own etcd member with the
// kube-apiserver's credentials, as the API server reaches it: the member
// answers its status without errors or alarms and serves a linearizable read
// (so it has a leader and the cluster has quorum).
func etcdMemberHealthy(ctx context.Context, n node.Node) error {
	const ep = kubeadm.LocalEtcd
	c, err := apiServerEtcd(ctx, n, ep)
	if err != nil {
		return err
	}
	defer c.Close()
	st := c.Status(ctx, ep)
	if err := st.Problem(); err != nil {
		return fmt.Errorf("etcd member at %s: %w", ep, err)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.Get(rctx, "health"); err != nil {
		return fmt.Errorf("etcd member %s: linearizable read: %w", st.MemberID, err)
	}
	return nil
}

// health is the component's own health endpoint (kubeadm.Healthy), and for
// etcd also the member as the API server reaches it.
func health(ctx context.Context, n node.Node, c string) error {
	if err := kubeadm.Healthy(ctx, n, c); err != nil {
		return err
	}
	if c == kubeadm.Etcd {
		return etcdMemberHealthy(ctx, n)
	}
	return nil
}

// poll checks f every second until it passes or o.Timeout passes.
func (o Options) poll(ctx context.Context, what string, f func(context.Context) error) error {
	return poll.Until(ctx, o.Timeout, time.Second, what, f)
}

// etcdHealthy is the "etcd-healthy" step: a renewal restarts this node's etcd
// member, which needs the others.
func (r *nodeRun) etcdHealthy(ctx context.Context) error {
	st := r.o.Status.Start(r.t.name + ": every etcd member healthy")
	err := r.o.poll(ctx, "every etcd member healthy", func(ctx context.Context) error { return clusterHealthy(ctx, r.t.n) })
	st.End(err)
	if err != nil {
		return fmt.Errorf("node %s: %w (nothing changed: a renewal restarts this node's etcd member, which needs the others)", r.t.name, err)
	}
	return nil
}
