package bootstrap

import (
	"context"
	"fmt"
	"strings"

	playbooks "github.com/kbootstrap/kbootstrap/ansible-free-playbooks"
	"github.com/kbootstrap/kbootstrap/inventory"
)

type lbPhase struct{ nodes []inventory.Node }

func (p *lbPhase) Name() string { return "loadbalancer" }

func (p *lbPhase) Title() string { return "Load balancer (playbook loadbalancer)" }

func (p *lbPhase) Prepare(_ context.Context, c *run) error {
	p.nodes = c.inv.ByRole(inventory.RoleLoadBalancer)
	return nil
}

func (p *lbPhase) ShouldRun() bool { return len(p.nodes) > 0 }

func (p *lbPhase) Plan() []string {
	var out []string
	for _, n := range p.nodes {
		out = append(out, n.Name+": haproxy balancing :6443 across the control planes")
	}
	return out
}

func (p *lbPhase) Run(ctx context.Context, c *run) error {
	st := c.status().Start("Load balancer " + names(p.nodes))
	pb, err := playbooks.Shipped("loadbalancer")
	if err != nil {
		st.End(err)
		return err
	}
	recap, err := playbooks.Run(ctx, pb, playbooks.Options{Inventory: c.inv, Nodes: p.nodes, Connector: c.opts.Connector,
		Concurrency: c.opts.Concurrency, Redactor: c.opts.Redactor})
	if err != nil {
		st.End(err)
		return fmt.Errorf("playbook loadbalancer: %w", err)
	}
	changed := 0
	for _, h := range recap.Hosts {
		changed += h.Changed
	}
	c.addChanged(changed)
	if changed == 0 {
		st.SetTitle(st.Title() + ": unchanged")
	}
	st.End(nil)
	return nil
}

func names(ns []inventory.Node) string {
	var s []string
	for _, n := range ns {
		s = append(s, n.Name)
	}
	return strings.Join(s, ", ")
}
