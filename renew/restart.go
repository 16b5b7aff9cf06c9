package renew

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/kbootstrap/kbootstrap/apidrain"
	"github.com/kbootstrap/kbootstrap/kubeadm"
	"github.com/kbootstrap/kbootstrap/node"
)

// restartAll drains the node's API server from the load balancer
// (apidrain), restarts its static pods one at a time, gates on the health of
// all of them and undrains it. started (when not nil) is told of each
// component before its restart begins. With nothing to restart it only
// gates on their health.
func (o Options) restartAll(ctx context.Context, t *target, want []string, started func(c string)) (err error) {
	all, err := o.present(ctx, t.n)
	if err != nil {
		return err
	}
	var cs []string
	for _, c := range all {
		if slices.Contains(want, c) {
			cs = append(cs, c)
		}
	}
	if len(cs) == 0 {
		st := o.Status.Start(t.name + ": " + strings.Join(all, ", ") + " healthy")
		err := o.healthAll(ctx, t, healthOrder(all), false)
		st.End(err)
		return err
	}
	restart := func() error {
		for _, c := range cs {
			if started != nil {
				started(c)
			}
			st := o.Status.Start(t.name + ": restarting " + c)
			err := o.restart(ctx, t, c)
			st.End(err)
			if err != nil {
				return fmt.Errorf("restarting %s: %w", c, err)
			}
		}
		st := o.Status.Start(t.name + ": " + strings.Join(all, ", ") + " healthy")
		err := o.healthAll(ctx, t, healthOrder(all), slices.Contains(cs, "kube-apiserver"))
		st.End(err)
		return err
	}
	// Restarting etcd fails the node's API server's requests for a moment
	// (it reaches only its own member): drained then too.
	if slices.Contains(cs, "kube-apiserver") || slices.Contains(cs, "etcd") {
		return apidrain.During(ctx, o.Status, apidrain.Options{Inventory: o.Inventory, Connector: o.Connector, Node: t.n, Name: t.name, DrainWait: o.DrainWait}, restart)
	}
	return restart()
}

// present are the components whose static pod manifest is on the node, in
// restart order (no etcd with an external etcd).
func (o Options) present(ctx context.Context, n node.Node) ([]string, error) {
	var out []string
	for _, c := range components {
		_, err := n.Stat(ctx, kubeadm.ManifestsDir+"/"+c+".yaml")
		if errors.Is(err, fs.ErrNotExist) {
			// Left aside by a run that died before moving it back.
			if _, aerr := n.Stat(ctx, asideDir+"/"+c+".yaml"); aerr == nil {
				if _, err := n.Run(ctx, fmt.Sprintf("mv %s/%s.yaml %s/", asideDir, c, kubeadm.ManifestsDir)); err != nil {
					return nil, err
				}
				o.Status.Printf("%s: %s.yaml was left in %s by an earlier run: moved back", n.Name(), c, asideDir)
				err = nil
			} else {
				continue
			}
		}
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if !slices.Contains(out, "kube-apiserver") {
		return nil, fmt.Errorf("no %s/kube-apiserver.yaml: not a control plane", kubeadm.ManifestsDir)
	}
	return out, nil
}

// restart stops c's container and the kubelet starts a new one, which reads
// the renewed files; it waits until that runs and is healthy. The pod and
// its manifest stay as they are: an interrupt leaves nothing aside. The
// kubelet starts it at once unless the container restarted less than 10
// minutes before (a retried renewal, a rollback): then after its doubling
// back-off (10 s, 20 s, 40 s...), which the wait (Timeout) covers.
func (o Options) restart(ctx context.Context, t *target, c string) error {
	return kubeadm.Restart(ctx, t.n, c,
		func(what string, f func(context.Context) error) error { return o.poll(ctx, what, f) },
		func(ctx context.Context) error { return health(ctx, t.n, c) })
}

// restartAll is the "restart" step: the static pods that read the renewed
// files, each noted in r.restarted before its restart begins.
func (r *nodeRun) restartAll(ctx context.Context) error {
	return r.o.restartAll(ctx, r.t, restarted(r.o.Certs), func(c string) { r.restarted = append(r.restarted, c) })
}
