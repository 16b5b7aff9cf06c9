package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kbootstrap/kbootstrap/inventory"
)

type joinCPPhase struct{ nodes []inventory.Node }

func (p *joinCPPhase) Name() string { return "join-control-planes" }

func (p *joinCPPhase) Title() string { return "Join control planes, one at a time" }

func (p *joinCPPhase) Prepare(_ context.Context, c *run) error {
	p.nodes = nil
	for _, n := range c.toJoin() {
		if n.Role == inventory.RoleControlPlane && n.Name != c.first {
			p.nodes = append(p.nodes, n)
		}
	}
	return nil
}

func (p *joinCPPhase) ShouldRun() bool { return len(p.nodes) > 0 }

func (p *joinCPPhase) Plan() []string {
	var out []string
	for _, n := range p.nodes {
		out = append(out, n.Name+": kubeadm join --config "+ConfigDir+"/kubeadm-join.yaml (control plane: new bootstrap token, CA hash, certificate key), then wait for its etcd member and Node Ready")
	}
	return out
}

func (p *joinCPPhase) Run(ctx context.Context, c *run) error {
	for _, in := range p.nodes {
		st := c.status().Start("Joining control plane " + in.Name)
		err := c.joinControlPlane(ctx, in)
		st.End(err)
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *run) joinControlPlane(ctx context.Context, in inventory.Node) error {
	if err := c.ensureCerts(ctx); err != nil {
		return err
	}
	token, err := c.newJoinToken(ctx, "join of control plane "+in.Name)
	if err != nil {
		return err
	}
	before, berr := c.etcdMembers(ctx)
	if err := c.join(ctx, in, token, true); err != nil {
		if berr != nil {
			return fmt.Errorf("%w (the etcd members could not be listed before the join: check `kbootstrap etcd members` for a member of %s)", err, in.Name)
		}
		return errors.Join(err, c.removeStrayMember(ctx, in, before))
	}
	c.addChanged(1)
	c.facts[in.Name].InCluster = true
	if err := c.ensureNetwork(ctx, true); err != nil {
		return err
	}
	defer c.addWait(time.Now())
	if err := c.waitEtcdMember(ctx, in); err != nil {
		return err
	}
	return c.waitReady(ctx, in.Name)
}
