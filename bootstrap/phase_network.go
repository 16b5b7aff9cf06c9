package bootstrap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kbootstrap/kbootstrap/internal/poll"
	"github.com/kbootstrap/kbootstrap/kubeadm"

	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/node"
)

// CNIConfigPath is the bridge CNI configuration host-gw writes on each node.
const CNIConfigPath = "/etc/cni/net.d/10-kbootstrap.conflist"

// CNIConfig is a bridge + host-local network for one node's pod CIDR. The
// bridge does not masquerade (its ipMasq would hide a pod's IP from the pods
// of every other node, against Kubernetes' network model): the node's
// masquerade rule (MasqueradeRule) does it for traffic leaving the cluster's
// pod network only.
func CNIConfig(cidr string) []byte {
	return fmt.Appendf(nil, `{
  "cniVersion": "1.0.0",
  "name": "kbootstrap",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, cidr)
}

// MasqueradeRule is the iptables nat POSTROUTING rule (without -A/-C) that
// host-gw adds on each node: traffic from a pod to anything outside the
// cluster's pod network leaves with the node's address; pod to pod keeps
// the pod's.
func MasqueradeRule(podSubnet string) string {
	return fmt.Sprintf("-s %[1]s ! -d %[1]s -m comment --comment kbootstrap-pod-masquerade -j MASQUERADE", podSubnet)
}

type networkPhase struct{}

func (p *networkPhase) Name() string { return "network" }
func (p *networkPhase) Title() string {
	return "Pod network"
}
func (p *networkPhase) Prepare(context.Context, *run) error { return nil }
func (p *networkPhase) ShouldRun() bool                     { return true }
func (p *networkPhase) Plan() []string {
	return []string{"host-gw: each node's " + CNIConfigPath + " from its podCIDR, routes to every other node's podCIDR; or the inventory's network.manifest applied"}
}
func (p *networkPhase) Run(ctx context.Context, c *run) error {
	if c.networkDone {
		return nil // the last join of this run converged it
	}
	return c.ensureNetwork(ctx, true)
}

// ensureNetwork converges the pod network over the nodes in the cluster.
// With wait, it first waits until every one of them has a podCIDR;
// without, nodes still lacking one are left for a later call (right after
// kubeadm init the controller-manager has not assigned cp1's yet, and the
// joins need not wait for it).
func (c *run) ensureNetwork(ctx context.Context, wait bool) (err error) {
	// The init and join phases converge the network as soon as their nodes
	// are in, unless the network phase is skipped.
	if c.skips(&networkPhase{}) {
		return nil
	}
	if m := c.inv.Network.Manifest; m != "" {
		return c.applyManifest(ctx, m)
	}
	var members []inventory.Node
	for _, n := range c.inv.Nodes {
		if n.Role != inventory.RoleLoadBalancer && c.facts[n.Name] != nil && c.facts[n.Name].InCluster {
			members = append(members, n)
		}
	}
	var cidrs map[string]string
	err = poll.Until(ctx, c.opts.ReadyTimeout, pollInterval, "pod network", func(ctx context.Context) error {
		nodes, err := c.clusterNodes(ctx)
		if err != nil {
			return err
		}
		cidrs = map[string]string{}
		var missing []string
		for _, n := range members {
			if cn := nodes[n.Name]; cn.PodCIDR != "" {
				cidrs[n.Name] = cn.PodCIDR
			} else {
				missing = append(missing, n.Name)
			}
		}
		if len(missing) > 0 && wait {
			return fmt.Errorf("no podCIDR assigned yet to %s (is the controller-manager allocating node CIDRs?)", strings.Join(missing, ", "))
		}
		return nil
	})
	if err != nil {
		return err
	}
	members = slices.DeleteFunc(members, func(n inventory.Node) bool { return cidrs[n.Name] == "" })
	defer func() { c.networkDone = err == nil && wait }()
	_, err = node.Parallel(ctx, members, c.opts.Concurrency, func(ctx context.Context, in inventory.Node) (struct{}, error) {
		n := c.nodes[in.Name]
		var what []string
		want := CNIConfig(cidrs[in.Name])
		if have, err := n.ReadFile(ctx, CNIConfigPath); err != nil || !bytes.Equal(have, want) {
			if _, err := n.Run(ctx, "install -d -m 0755 /etc/cni/net.d"); err != nil {
				return struct{}{}, err
			}
			if err := n.WriteFile(ctx, CNIConfigPath, bytes.NewReader(want), node.WriteOptions{Mode: 0o644}); err != nil {
				return struct{}{}, fmt.Errorf("write %s: %w", CNIConfigPath, err)
			}
			what = append(what, "CNI "+cidrs[in.Name])
		}
		var script strings.Builder
		if sub := c.cluster.PodSubnet; sub != "" {
			fmt.Fprintf(&script, "iptables -t nat -C POSTROUTING %[1]s 2>/dev/null || { iptables -t nat -A POSTROUTING %[1]s && echo masquerade; }\n", MasqueradeRule(sub))
		}
		for _, m := range members {
			if m.Name == in.Name {
				continue
			}
			fmt.Fprintf(&script, "ip -4 route show exact %[1]s | grep -q 'via %[2]s ' || { ip route replace %[1]s via %[2]s && echo %[1]s; }\n", cidrs[m.Name], m.InternalIP())
		}
		if script.Len() > 0 {
			res, err := n.Run(ctx, script.String())
			if err != nil {
				return struct{}{}, fmt.Errorf("pod routes: %w", err)
			}
			routes := strings.Fields(string(res.Stdout))
			if i := slices.Index(routes, "masquerade"); i >= 0 {
				routes = slices.Delete(routes, i, i+1)
				what = append(what, "masquerade out of "+c.cluster.PodSubnet)
			}
			if len(routes) > 0 {
				what = append(what, "routes to "+strings.Join(routes, " "))
			}
		}
		if len(what) > 0 {
			c.addChanged(1)
			c.status().Printf("✓ Pod network on %s: %s", in.Name, strings.Join(what, ", "))
		}
		return struct{}{}, nil
	})
	return err
}

// applyManifest applies the user's CNI manifest with the admin kubeconfig.
func (c *run) applyManifest(ctx context.Context, file string) error {
	if c.manifestApplied {
		return nil
	}
	if !filepath.IsAbs(file) && c.inv.File != "" {
		file = filepath.Join(filepath.Dir(c.inv.File), file)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("network.manifest: %w", err)
	}
	st := c.status().Start("Applying network manifest " + filepath.Base(file))
	res, err := c.kubectl(ctx, "apply -f -", node.StdinString(string(b)))
	if err == nil {
		c.manifestApplied = true
		for _, l := range strings.Split(strings.TrimSpace(string(res.Stdout)), "\n") {
			if l != "" && !strings.HasSuffix(l, " unchanged") {
				c.addChanged(1)
			}
		}
	}
	st.End(err)
	return err
}

var errNoCluster = errors.New("no control plane holds " + kubeadm.AdminConf)
