package renew

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/kbootstrap/kbootstrap/apidrain"
	"github.com/kbootstrap/kbootstrap/kubeadm"
	"github.com/kbootstrap/kbootstrap/node"
)

// restartAll drains the node's API server from the load balancer
// (apidrain), restarts its static pods one at a time, gates on the health of
// all of them and undrains it.
func (o Options) restartAll(ctx context.Context, t *target, want []string) (err error) {
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
		return nil
	}
	// Restarting etcd fails the node's API server's requests for a moment
	// (it reaches only its own member): drained then too.
	if slices.Contains(cs, "kube-apiserver") || slices.Contains(cs, "etcd") {
		d, why := apidrain.For(ctx, apidrain.Options{Inventory: o.Inventory, Connector: o.Connector, Node: t.n, Name: t.name, DrainWait: o.DrainWait})
		if why != nil && !errors.Is(why, apidrain.ErrNoLoadBalancer) {
			o.Status.Printf("%s: not draining through the load balancer: %v", t.name, why)
		}
		st := o.Status.Start(t.name + ": draining the API server (" + d.Method() + ")")
		err = d.Drain(ctx)
		st.End(err)
		if errors.Is(err, apidrain.ErrNoFirewall) {
			o.Status.Printf("%s: %v: its clients may see the restart", t.name, err)
			err = nil
		} else {
			// Undrained on every way out, interrupted or not.
			defer func() {
				cctx, cancel := cleanupContext(ctx, time.Minute)
				defer cancel()
				st := o.Status.Start(t.name + ": undraining the API server")
				uerr := d.Undrain(cctx)
				st.End(uerr)
				if err == nil {
					err = uerr
				}
			}()
		}
		if err != nil {
			return err
		}
	}
	for _, c := range cs {
		st := o.Status.Start(t.name + ": restarting " + c)
		err := o.restart(ctx, t, c)
		st.End(err)
		if err != nil {
			return fmt.Errorf("restarting %s: %w", c, err)
		}
	}
	st := o.Status.Start(t.name + ": " + strings.Join(all, ", ") + " healthy")
	err = o.healthAll(ctx, t, healthOrder(all), slices.Contains(cs, "kube-apiserver"))
	st.End(err)
	return err
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

// running returns the ID of c's running container ("" when none).
func running(ctx context.Context, n node.Node, c string) (string, error) {
	// crictl when installed, else containerd's ctr (what prepare-node installs).
	res, err := n.Run(ctx, fmt.Sprintf(`if command -v crictl >/dev/null; then crictl ps -q --state running --name '^%[1]s$'; else
tasks=$(ctr -n k8s.io tasks ls)
for id in $(ctr -n k8s.io containers ls -q 'labels."io.kubernetes.container.name"==%[1]s'); do
  printf '%%s\n' "$tasks" | awk -v id="$id" '$1 == id && $3 == "RUNNING" { print id }'
done; fi`, c))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(res.Stdout)), nil
}

// stopGrace is how long a component is given to end after SIGTERM before
// SIGKILL. etcd gets time to hand its leadership over; the API server
// closes its listener at once and then waits for open connections up to its
// request timeout (60 s, seen in the lab as 44 s of a dead API server): the
// node is drained, so what is still open is local and retries.
var stopGrace = map[string]time.Duration{"etcd": 15 * time.Second}

const defaultStopGrace = 5 * time.Second

// stop ends container id with SIGTERM, and SIGKILL after grace.
func stop(ctx context.Context, n node.Node, id string, grace time.Duration) error {
	secs := int(grace.Seconds())
	// crictl stop does the same (SIGTERM, SIGKILL after --timeout); with
	// containerd's ctr alone (what prepare-node installs), by hand.
	_, err := n.Run(ctx, fmt.Sprintf(`id=%[1]s
if command -v crictl >/dev/null; then exec crictl stop --timeout %[2]d "$id" >/dev/null; fi
alive() { ctr -n k8s.io tasks ls | awk -v id="$id" '$1 == id && $3 == "RUNNING" { f=1 } END { exit !f }'; }
ctr -n k8s.io tasks kill "$id"
end=$(( $(date +%%s) + %[2]d ))
while alive && [ "$(date +%%s)" -lt "$end" ]; do sleep 0.2; done
alive || exit 0
ctr -n k8s.io tasks kill -s SIGKILL "$id"
end=$(( $(date +%%s) + 10 ))
while alive && [ "$(date +%%s)" -lt "$end" ]; do sleep 0.2; done
! alive`, node.ShellQuote(id), secs))
	return err
}

// restart stops c's container and the kubelet starts a new one, which reads
// the renewed files; it waits until that runs and is healthy. The pod and
// its manifest stay as they are: an interrupt leaves nothing aside. The
// kubelet starts it at once unless the container restarted less than 10
// minutes before (a retried renewal, a rollback): then after its doubling
// back-off (10 s, 20 s, 40 s...), which the wait (Timeout) covers.
func (o Options) restart(ctx context.Context, t *target, c string) error {
	old, err := running(ctx, t.n, c)
	if err != nil {
		return err
	}
	grace, ok := stopGrace[c]
	if !ok {
		grace = defaultStopGrace
	}
	for _, id := range strings.Fields(old) {
		if err := stop(ctx, t.n, id, grace); err != nil {
			return fmt.Errorf("stopping %s's container %s: %w", c, id, err)
		}
	}
	if err := o.poll(ctx, c+" running again", func(ctx context.Context) error {
		id, err := running(ctx, t.n, c)
		if err == nil && (id == "" || slices.Contains(strings.Fields(old), id)) {
			err = errors.New("no new container yet")
		}
		return err
	}); err != nil {
		return err
	}
	return o.poll(ctx, c+" healthy", func(ctx context.Context) error { return health(ctx, t.n, c) })
}

// restartAll is the "restart" step: the static pods that read the renewed
// files.
func (r *nodeRun) restartAll(ctx context.Context) error {
	return r.o.restartAll(ctx, r.t, restarted(r.o.Certs))
}
