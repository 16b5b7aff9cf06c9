package bootstrap

import (
	"context"
	"errors"
	"time"

	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/node"
)

type joinWorkersPhase struct{ nodes []inventory.Node }

func (p *joinWorkersPhase) Name() string { return "join-workers" }

func (p *joinWorkersPhase) Title() string { return "Join workers, in parallel" }

func (p *joinWorkersPhase) Prepare(_ context.Context, c *run) error {
	p.nodes = nil
	for _, n := range c.toJoin() {
		if n.Role == inventory.RoleWorker {
			p.nodes = append(p.nodes, n)
		}
	}
	return nil
}

func (p *joinWorkersPhase) ShouldRun() bool { return len(p.nodes) > 0 }

func (p *joinWorkersPhase) Plan() []string {
	var out []string
	for _, n := range p.nodes {
		out = append(out, n.Name+": kubeadm join --config "+ConfigDir+"/kubeadm-join.yaml (new bootstrap token, CA hash), then wait for Node Ready")
	}
	return out
}

func (p *joinWorkersPhase) Run(ctx context.Context, c *run) error {
	token, err := c.newJoinToken(ctx, "join of workers")
	if err != nil {
		return err
	}
	if _, err := c.caHashOnce(ctx); err != nil {
		return err
	}
	_, err = node.Parallel(ctx, p.nodes, c.opts.Concurrency, func(ctx context.Context, in inventory.Node) (struct{}, error) {
		st := c.status().Start("Joining worker " + in.Name)
		err := c.join(ctx, in, token, false)
		if err == nil {
			c.addChanged(1)
			c.mu.Lock()
			c.facts[in.Name].InCluster = true
			c.mu.Unlock()
		}
		st.End(err)
		return struct{}{}, err
	})
	if nerr := c.ensureNetwork(ctx, true); nerr != nil {
		return errors.Join(err, nerr)
	}
	if err != nil {
		return err
	}
	defer c.addWait(time.Now())
	_, err = node.Parallel(ctx, p.nodes, c.opts.Concurrency, func(ctx context.Context, in inventory.Node) (struct{}, error) {
		return struct{}{}, c.waitReady(ctx, in.Name)
	})
	return err
}
