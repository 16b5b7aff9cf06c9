package bootstrap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

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
	return []string{"kube-router (the default): each node's " + KubeRouterCNIConfigPath + " from its podCIDR, then DaemonSet kube-system/kube-router; host-gw: each node's " + CNIConfigPath + " from its podCIDR, routes to every other node's podCIDR; or the inventory's network.manifest applied"}
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
	complete := len(cidrs) == len(members)
	members = slices.DeleteFunc(members, func(n inventory.Node) bool { return cidrs[n.Name] == "" })
	defer func() { c.networkDone = err == nil && wait }()
	if c.inv.Network.PluginName() == inventory.PluginKubeRouter {
		return c.ensureKubeRouter(ctx, members, cidrs, complete, wait)
	}
	_, err = node.Parallel(ctx, members, c.opts.Concurrency, func(ctx context.Context, in inventory.Node) (struct{}, error) {
		n := c.nodes[in.Name]
		var what []string
		want := CNIConfig(cidrs[in.Name])
		if have, err := n.ReadFile(ctx, CNIConfigPath); err != nil || !bytes.Equal(have, want) {
			if err := writeCNIConfig(ctx, n, CNIConfigPath, want); err != nil {
				return struct{}{}, err
			}
			what = append(what, "CNI "+cidrs[in.Name])
		}
		var script strings.Builder
		script.WriteString(dropStaleOwnRoute(cidrs[in.Name]))
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
			if i := slices.Index(routes, staleRoute); i >= 0 {
				routes = slices.Delete(routes, i, i+1)
				what = append(what, "a stale route to its own "+cidrs[in.Name]+" removed")
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
	err = c.apply(ctx, "Applying network manifest "+filepath.Base(file), b)
	c.manifestApplied = err == nil
	return err
}

// apply applies a manifest with kubectl, under a status line, and counts
// each object kubectl did not report unchanged as a change.
func (c *run) apply(ctx context.Context, title string, manifest []byte) error {
	st := c.status().Start(title)
	res, err := c.kubectl(ctx, "apply -f -", node.StdinString(string(manifest)))
	if err == nil {
		for _, l := range strings.Split(strings.TrimSpace(string(res.Stdout)), "\n") {
			if l != "" && !strings.HasSuffix(l, " unchanged") {
				c.addChanged(1)
			}
		}
	}
	st.End(err)
	return err
}

// writeCNIConfig writes a node's CNI configuration file (its directory
// created when missing).
func writeCNIConfig(ctx context.Context, n node.Node, file string, data []byte) error {
	if _, err := n.Run(ctx, "install -d -m 0755 "+path.Dir(file)); err != nil {
		return err
	}
	if err := n.WriteFile(ctx, file, bytes.NewReader(data), node.WriteOptions{Mode: 0o644}); err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	return nil
}

// dropStaleOwnRoute is a script that removes the routes to a node's own
// pod CIDR through another node (its bridge holds it): left by an earlier
// cluster whose controller-manager gave that CIDR to another node, they
// would send the node's own pods' traffic away. It prints staleRoute when
// it removed one.
func dropStaleOwnRoute(cidr string) string {
	return fmt.Sprintf("for gw in $(ip -4 route show exact %[1]s | awk '$2 == \"via\" { print $3 }'); do ip -4 route del %[1]s via \"$gw\" && echo %[2]s; done\n", cidr, staleRoute)
}

// Words the node scripts print for what they changed.
const (
	staleRoute = "stale-route"
	noNAT      = "no-nat"
	podsOwed   = "pods-owed" // host-gw's pods are still to be recreated
)

var errNoCluster = errors.New("no control plane holds " + kubeadm.AdminConf)

// ensureKubeRouter converges the kube-router network: each node's CNI
// configuration (host-gw's, when the cluster had it, removed with its
// masquerade rule: kube-router replaces its routes and masquerades pod
// traffic leaving the cluster itself), then kube-router's DaemonSet, applied
// once per run as soon as every node in the cluster has its configuration
// (kube-router exits without it), and, with wait, running on every node.
// Each node also gets KubeRouterNoNATRule.
func (c *run) ensureKubeRouter(ctx context.Context, members []inventory.Node, cidrs map[string]string, complete, wait bool) error {
	migrating, err := node.Parallel(ctx, members, c.opts.Concurrency, func(ctx context.Context, in inventory.Node) (bool, error) {
		n := c.nodes[in.Name]
		var what []string
		if have, err := n.ReadFile(ctx, KubeRouterCNIConfigPath); err != nil || !kubeRouterCNICurrent(have, cidrs[in.Name]) {
			if err := writeCNIConfig(ctx, n, KubeRouterCNIConfigPath, KubeRouterCNIConfig(cidrs[in.Name])); err != nil {
				return false, err
			}
			what = append(what, "CNI "+cidrs[in.Name])
		}
		// host-gw's leftovers: its configuration sorts first and would win,
		// and its bridge holds the same pod CIDR as kube-router's. The pods
		// attached to it are recreated once kube-router runs; the marker
		// keeps that owed across an interrupted run.
		script := fmt.Sprintf(`if [ -e %[1]s ]; then
  mkdir -p %[2]s && touch %[3]s
  rm -f %[1]s && ip link del %[4]s 2>/dev/null; echo cni
fi
`, CNIConfigPath, path.Dir(hostGWMigrationMarker), hostGWMigrationMarker, hostGWBridge)
		if sub := c.cluster.PodSubnet; sub != "" {
			script += fmt.Sprintf("while iptables -t nat -D POSTROUTING %s 2>/dev/null; do echo masquerade; done\n", MasqueradeRule(sub))
		}
		script += fmt.Sprintf("if [ -e %s ]; then echo %s; fi\n", hostGWMigrationMarker, podsOwed)
		script += fmt.Sprintf("iptables -t nat -C POSTROUTING %[1]s 2>/dev/null || { iptables -t nat -I POSTROUTING 1 %[1]s && echo %[2]s; }\n", KubeRouterNoNATRule(c.cluster.PodSubnet), noNAT)
		script += dropStaleOwnRoute(cidrs[in.Name])
		res, err := n.Run(ctx, script)
		if err != nil {
			return false, fmt.Errorf("pod network rules and host-gw's leftovers: %w", err)
		}
		out := strings.Fields(string(res.Stdout))
		migrating := slices.Contains(out, podsOwed)
		if slices.Contains(out, noNAT) {
			what = append(what, "no NAT within "+c.cluster.PodSubnet)
		}
		if slices.Contains(out, staleRoute) {
			what = append(what, "a stale route to its own "+cidrs[in.Name]+" removed")
		}
		if out = slices.DeleteFunc(out, func(s string) bool { return s == podsOwed || s == staleRoute || s == noNAT }); len(out) > 0 {
			what = append(what, "host-gw's "+strings.Join(slices.Compact(out), " and ")+" removed")
		}
		if len(what) > 0 {
			c.addChanged(1)
			c.status().Printf("✓ Pod network on %s: %s", in.Name, strings.Join(what, ", "))
		}
		return migrating, nil
	})
	if err != nil || !complete {
		return err
	}
	if !c.kubeRouterApplied {
		if err := c.apply(ctx, "Applying kube-router ("+KubeRouterImage+")", KubeRouterManifest(KubeRouterImage)); err != nil {
			return err
		}
		c.kubeRouterApplied = true
	}
	if !wait {
		return nil
	}
	return c.status().Do("Waiting for kube-router on every node", func() error {
		if _, err := c.kubectl(ctx, fmt.Sprintf("-n kube-system rollout status daemonset/kube-router --timeout=%ds", int(c.opts.ReadyTimeout.Seconds()))); err != nil {
			return err
		}
		if err := c.waitPodRoutes(ctx, members, cidrs); err != nil {
			return err
		}
		return c.restartHostGWPods(ctx, members, migrating)
	})
}

// waitPodRoutes waits until every node has a route to every other node's
// pod CIDR. kube-router's pods are ready before its BGP sessions are up and
// its routes in place (a fresh 3-node cluster's verify once found none
// between any two nodes): the cluster is not ready until they are.
func (c *run) waitPodRoutes(ctx context.Context, members []inventory.Node, cidrs map[string]string) error {
	return poll.Until(ctx, c.opts.ReadyTimeout, time.Second, "routes between the nodes' pod CIDRs", func(ctx context.Context) error {
		_, err := node.Parallel(ctx, members, c.opts.Concurrency, func(ctx context.Context, in inventory.Node) (struct{}, error) {
			var script strings.Builder
			for _, m := range members {
				if cidr := cidrs[m.Name]; m.Name != in.Name && cidr != "" {
					fmt.Fprintf(&script, "ip -4 route show %[1]s | grep -q . || echo %[1]s\n", cidr)
				}
			}
			if script.Len() == 0 {
				return struct{}{}, nil
			}
			res, err := c.nodes[in.Name].Run(ctx, script.String())
			if err != nil {
				return struct{}{}, err
			}
			if missing := strings.Fields(string(res.Stdout)); len(missing) > 0 {
				return struct{}{}, fmt.Errorf("no route yet to %s", strings.Join(missing, ", "))
			}
			return struct{}{}, nil
		})
		return err
	})
}

// hostGWBridge is the bridge of host-gw's CNI configuration; the marker
// says that a node's pods still sit on it (it is gone) and are owed a
// restart onto kube-router's bridge.
const (
	hostGWBridge          = "cni0"
	hostGWMigrationMarker = "/var/lib/kbootstrap/host-gw-to-kube-router"
)

// restartHostGWPods deletes the pods that host-gw's bridge attached on the
// nodes moved to kube-router (their controllers recreate them on
// kube-router's bridge; hostNetwork pods keep running), then the node's
// marker.
func (c *run) restartHostGWPods(ctx context.Context, members []inventory.Node, migrating []bool) error {
	var errs []error
	for i, in := range members {
		if !migrating[i] {
			continue
		}
		res, err := c.kubectl(ctx, "delete pods --all-namespaces --wait=false --field-selector "+node.ShellQuote("spec.nodeName="+in.Name+",spec.hostNetwork=false"))
		if err == nil {
			_, err = c.nodes[in.Name].Run(ctx, "rm -f "+hostGWMigrationMarker)
		}
		if err != nil {
			errs = append(errs, &node.NodeError{Node: in.Name, Err: fmt.Errorf("pods on host-gw's bridge: %w", err)})
			continue
		}
		if n := strings.Count(string(res.Stdout), " deleted"); n > 0 {
			c.addChanged(n)
			pods := "pods"
			if n == 1 {
				pods = "pod"
			}
			c.status().Printf("✓ Pod network on %s: %d %s of host-gw's bridge recreated on kube-router's", in.Name, n, pods)
		}
	}
	return errors.Join(errs...)
}
