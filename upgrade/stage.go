package upgrade

import (
	"context"
	_ "embed"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	playbooks "github.com/kbootstrap/kbootstrap/ansible-free-playbooks"
	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/node"
)

//go:embed stage.yaml
var stagePlaybook []byte

// stageDir holds the staged binaries of version v on a node.
func stageDir(v string) string { return NodeDir + "/" + v }

// stage puts the target's kubeadm, kubelet and kubectl into stageDir on
// every node to upgrade: uploaded from Binaries (the playbook engine: only
// what differs is sent) or extracted from the packages stagePackages
// fetches; it imports the images of Images, then checks that each staged
// binary answers the target version on its node.
func (r *run) stage(ctx context.Context, todo []*target) error {
	pb, err := playbooks.Parse("upgrade/stage.yaml", stagePlaybook, nil)
	if err != nil {
		return err
	}
	vars := map[string]string{"stage": stageDir(r.res.To)}
	for k, dir := range map[string]string{"binaries": r.o.Binaries, "images": r.o.Images} {
		if dir != "" {
			if vars[k], err = filepath.Abs(dir); err != nil {
				return err
			}
		}
	}
	var nodes []inventory.Node
	for _, t := range todo {
		nodes = append(nodes, t.in)
	}
	what := "kubeadm, kubelet, kubectl " + r.res.To
	switch {
	case r.o.Binaries == "" && r.o.Images == "":
		what = "the directory " + stageDir(r.res.To)
	case r.o.Binaries == "":
		what = "the images"
	}
	if err := r.o.Status.Do(fmt.Sprintf("stage %s on %d nodes", what, len(nodes)), func() error {
		_, err := playbooks.Run(ctx, pb, playbooks.Options{Inventory: r.o.Inventory, Nodes: nodes, Connector: r.o.Connector, ExtraVars: vars})
		return err
	}); err != nil {
		return err
	}
	if r.o.Binaries == "" {
		if err := r.stagePackages(ctx, todo); err != nil {
			return err
		}
	}
	return eachTarget(ctx, todo, r.checkStaged)
}

// eachTarget runs f on every target at once (node.Parallel: every target
// runs whatever happens to the others; the error joins one per node).
func eachTarget(ctx context.Context, ts []*target, f func(context.Context, *target) error) error {
	nodes := make([]inventory.Node, len(ts))
	for i, t := range ts {
		nodes[i] = t.in
	}
	_, err := node.Parallel(ctx, nodes, len(nodes), func(ctx context.Context, in inventory.Node) (struct{}, error) {
		i := slices.IndexFunc(ts, func(t *target) bool { return t.in.Name == in.Name })
		return struct{}{}, f(ctx, ts[i])
	})
	return err
}

// versionCmd prints the version of binary b in dir, as each reports it.
func versionCmd(dir, b string) string {
	p := node.ShellQuote(dir + "/" + b)
	switch b {
	case "kubeadm":
		return p + " version -o short"
	case "kubectl":
		return p + " version --client | awk '/Client Version/ {print $3}'"
	default:
		return p + " --version | awk '{print $2}'"
	}
}

func (r *run) checkStaged(ctx context.Context, t *target) error {
	for _, b := range binaries {
		src := r.o.Binaries + "/" + b
		if t.pkg != nil {
			src = "the " + b + " of " + t.pkg.uri
		}
		res, err := t.n.Run(ctx, versionCmd(stageDir(r.res.To), b))
		if err != nil {
			return fmt.Errorf("node %s: %s: %w", t.in.Name, src, err)
		}
		if got := strings.TrimSpace(string(res.Stdout)); got != r.res.To {
			return fmt.Errorf("node %s: %s is %q, not %s", t.in.Name, src, got, r.res.To)
		}
	}
	return nil
}

// kubeadmPlan asks the staged kubeadm on the first control plane to upgrade
// for: `kubeadm upgrade plan` checks the cluster and the version skew its
// own way.
func (r *run) kubeadmPlan(ctx context.Context, t *target) error {
	return r.o.Status.Do(t.in.Name+": kubeadm upgrade plan "+r.res.To, func() error {
		_, err := t.n.Run(ctx, node.ShellQuote(stageDir(r.res.To)+"/kubeadm")+" upgrade plan "+node.ShellQuote(r.res.To))
		if err != nil {
			return fmt.Errorf("node %s: kubeadm upgrade plan %s: %w", t.in.Name, r.res.To, err)
		}
		return nil
	})
}
