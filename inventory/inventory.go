package inventory

import (
	"fmt"
	"net"
	"slices"
	"strconv"
)

// InternalIP is the node's cluster-facing address: internalAddress, or
// address when none is given.
func (n Node) InternalIP() string {
	if n.InternalAddress != "" {
		return n.InternalAddress
	}
	return n.Address
}

// SSHFor returns the effective SSH settings of n: the node's own block over
// the cluster's defaults, field by field.
func (inv *Inventory) SSHFor(n Node) SSH {
	s := inv.SSH
	o := n.SSH
	if o.User != "" {
		s.User = o.User
	}
	if o.Port != 0 {
		s.Port = o.Port
	}
	if o.KeyFile != "" {
		s.KeyFile = o.KeyFile
	}
	if o.KnownHostsFile != "" {
		s.KnownHostsFile = o.KnownHostsFile
	}
	if o.Bastion != nil {
		s.Bastion = o.Bastion
	}
	if s.User == "" {
		s.User = "root"
	}
	if s.Port == 0 {
		s.Port = 22
	}
	if b := s.Bastion; b != nil {
		bb := *b
		if bb.User == "" {
			bb.User = s.User
		}
		if bb.Port == 0 {
			bb.Port = 22
		}
		if bb.KeyFile == "" {
			bb.KeyFile = s.KeyFile
		}
		s.Bastion = &bb
	}
	return s
}

// SSHAddress is host:port of the node's SSH server.
func (inv *Inventory) SSHAddress(n Node) string {
	return net.JoinHostPort(n.Address, strconv.Itoa(inv.SSHFor(n).Port))
}

// Endpoint is the control-plane endpoint, kbootstrap's one rule for it:
// controlPlaneEndpoint when given, else the first load balancer's internal
// address on 6443 (the haproxy kbootstrap installs there), else the first
// control plane's internal address on 6443. init hands it to kubeadm, and
// every later command (certs check, renew, playbooks, kubeconfigs) judges
// and reaches the same one.
func (inv *Inventory) Endpoint() string {
	if inv.ControlPlaneEndpoint != "" {
		return inv.ControlPlaneEndpoint
	}
	if lbs := inv.ByRole(RoleLoadBalancer); len(lbs) > 0 {
		return net.JoinHostPort(lbs[0].InternalIP(), "6443")
	}
	if cps := inv.ByRole(RoleControlPlane); len(cps) > 0 {
		return net.JoinHostPort(cps[0].InternalIP(), "6443")
	}
	return ""
}

// Selector limits a run to some nodes. Empty fields select everything.
type Selector struct {
	Hosts []string
	Roles []Role
}

// Select returns the nodes matching sel in inventory order. A host name that
// is not in the inventory is an error.
func (inv *Inventory) Select(sel Selector) ([]Node, error) {
	for _, h := range sel.Hosts {
		if _, ok := inv.Node(h); !ok {
			return nil, fmt.Errorf("--host %q: no such node in %s", h, inv.File)
		}
	}
	var out []Node
	for _, n := range inv.Nodes {
		if len(sel.Hosts) > 0 && !slices.Contains(sel.Hosts, n.Name) {
			continue
		}
		if len(sel.Roles) > 0 && !slices.Contains(sel.Roles, n.Role) {
			continue
		}
		out = append(out, n)
	}
	return out, nil
}

// Node returns the node called name.
func (inv *Inventory) Node(name string) (Node, bool) {
	for _, n := range inv.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// ByRole returns the nodes of a role, in inventory order.
func (inv *Inventory) ByRole(r Role) []Node {
	var out []Node
	for _, n := range inv.Nodes {
		if n.Role == r {
			out = append(out, n)
		}
	}
	return out
}
