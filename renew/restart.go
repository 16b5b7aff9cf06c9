package renew

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/kbootstrap/kbootstrap/kubeadm"
	"github.com/kbootstrap/kbootstrap/node"
)

// restartAll drains the node's API server from the load balancer, restarts
// its static pods one at a time, gates on the health of all of them and
// undrains it.
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
	drained := false
	if slices.Contains(cs, "kube-apiserver") {
		st := o.Status.Start(t.name + ": draining the API server (new connections refused)")
		drained, err = o.drain(ctx, t.n)
		st.End(err)
		if drained {
			// Undrained on every way out, interrupted or not.
			defer func() {
				cctx, cancel := cleanupContext(ctx, time.Minute)
				defer cancel()
				st := o.Status.Start(t.name + ": undraining the API server")
				uerr := o.undrain(cctx, t.n)
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

// restart moves the manifest out, waits until the kubelet has stopped the
// pod, moves it back and waits until it runs again and is healthy.
func (o Options) restart(ctx context.Context, t *target, c string) error {
	old, err := running(ctx, t.n, c)
	if err != nil {
		return err
	}
	m := kubeadm.ManifestsDir + "/" + c + ".yaml"
	aside := asideDir + "/" + c + ".yaml"
	if _, err := t.n.Run(ctx, fmt.Sprintf("mkdir -p %s && chmod 700 %s && mv %s %s", asideDir, asideDir, m, aside)); err != nil {
		return err
	}
	stopErr := o.poll(ctx, "the kubelet stopping "+c, func(ctx context.Context) error {
		id, err := running(ctx, t.n, c)
		if err == nil && id != "" {
			err = fmt.Errorf("container %s still running", id)
		}
		return err
	})
	// The manifest goes back whatever happened meanwhile (an interrupt
	// included): a pod left aside is a control-plane component down.
	cctx, cancel := cleanupContext(ctx, 30*time.Second)
	_, err = t.n.Run(cctx, fmt.Sprintf("mv %s %s", aside, m))
	cancel()
	if err != nil {
		return err
	}
	if stopErr != nil {
		return stopErr
	}
	if err := o.poll(ctx, c+" running again", func(ctx context.Context) error {
		id, err := running(ctx, t.n, c)
		if err == nil && (id == "" || id == old) {
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
