package bootstrap

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/kbootstrap/kbootstrap/apidrain"
	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/kubeadm"
	"github.com/kbootstrap/kbootstrap/node"
	"github.com/kbootstrap/kbootstrap/progress"
)

// resetLeftovers removes what kubeadm reset leaves on a node (its own
// advice): the CNI configuration and state, the iptables rules of
// Kubernetes, the CNI plugins, host-gw and kube-router (only those: other
// rules stay), kube-router's routes and ipsets, kubeadm's
// and etcd's directories' content, kbootstrap's kubeadm configurations and
// root's kubeconfig. Each step is a no-op when there is nothing to remove.
const resetLeftovers = `set -e

rm -rf /etc/cni/net.d/* ` + ConfigDir + `/*.yaml /root/.kube/config
rm -f ` + hostGWMigrationMarker + `
ip link del ` + hostGWBridge + ` 2>/dev/null || true
ip link del kube-bridge 2>/dev/null || true
while ip rule del lookup 77 2>/dev/null; do :; done
# kube-router's routes to the other nodes' pod CIDRs (its protocol 0x11): the
# CIDRs may be assigned to other nodes when the cluster is formed again.
ip route flush proto 17 2>/dev/null || true
rules='(KUBE-|CNI-|cali-|flannel|FLANNEL|kbootstrap-pod-masquerade|kbootstrap-pod-no-nat|kube-router-|kube-bridge)'
for t in iptables ip6tables; do
  command -v $t-save >/dev/null 2>&1 || continue
  if $t-save 2>/dev/null | grep -qE "$rules"; then $t-save | grep -vE "$rules" | $t-restore; fi
done
# kube-router's ipsets, once no rule uses them.
if command -v ipset >/dev/null 2>&1; then
  for s in $(ipset list -n 2>/dev/null | grep -E '^(kube-router-|KUBE-)'); do ipset destroy "$s" 2>/dev/null || true; done
fi
for d in ` + kubeadm.KubernetesDir + " " + kubeadm.EtcdDataDir + ` /var/lib/cni /run/flannel; do
  if [ -d "$d" ]; then find "$d" -mindepth 1 -maxdepth 1 -exec rm -rf -- {} +; fi
done`

// ResetOptions configure Reset.
type ResetOptions struct {
	Inventory *inventory.Inventory
	Connector node.Connector
	Nodes     []inventory.Node
	// Confirm is asked before anything changes unless Yes.
	Yes    bool
	In     io.Reader
	Prompt io.Writer
	Status *progress.Status
	Stream bool
	// Redactor may be nil.
	Redactor *node.Redactor
}

// ErrNotConfirmed is returned when the user did not confirm a reset.
var ErrNotConfirmed = errors.New("reset not confirmed: nothing was changed")

// Reset runs kubeadm reset on the selected nodes, one at a time: a control
// plane leaves etcd first (its member removed through another control
// plane), its Node object is deleted, and what kubeadm reset leaves behind
// goes (resetLeftovers). It is kbootstrap's one reset: there is no reset
// playbook.
func Reset(ctx context.Context, o ResetOptions) error {
	var names []string
	for _, n := range o.Nodes {
		if n.Role != inventory.RoleLoadBalancer {
			names = append(names, n.Name)
		}
	}
	if len(names) == 0 {
		return errors.New("reset: no control-plane or worker node selected")
	}
	if !o.Yes {
		fmt.Fprintf(o.Prompt, "Reset %s? kubeadm reset wipes their Kubernetes state. [y/N] ", strings.Join(names, ", "))
		line, _ := bufio.NewReader(o.In).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
			return ErrNotConfirmed
		}
	}
	var errs []error
	for _, in := range o.Nodes {
		if in.Role == inventory.RoleLoadBalancer {
			continue
		}
		st := o.Status.Start("Resetting " + in.Name)
		err := resetOne(ctx, o, in)
		st.End(err)
		if err != nil {
			errs = append(errs, &node.NodeError{Node: in.Name, Err: err})
		}
	}
	return errors.Join(errs...)
}

func resetOne(ctx context.Context, o ResetOptions, in inventory.Node) error {
	n, err := o.Connector.Connect(ctx, in)
	if err != nil {
		return err
	}
	n = node.Sudo(n)
	// Another control plane to remove the Node and the etcd member from.
	other, _ := adminRun(ctx, o.Inventory, o.Connector, o.Redactor, o.Status, in.Name)
	if other != nil {
		other.kubectl(ctx, "drain "+in.Name+" --ignore-daemonsets --delete-emptydir-data --force --timeout=60s", node.HideOutput())
	}
	if in.Role == inventory.RoleControlPlane {
		// Out of the load balancer's rotation before its API server goes
		// (apidrain, as certs renew drains); put back afterwards, where its
		// health check keeps it out until it serves again.
		d, _ := apidrain.For(ctx, apidrain.Options{Inventory: o.Inventory, Connector: o.Connector, Node: n, Name: in.Name, ReadyWait: -1})
		st := o.Status.Start(in.Name + ": draining the API server (" + d.Method() + ")")
		err := d.Drain(ctx)
		st.End(err)
		switch {
		case errors.Is(err, apidrain.ErrNoFirewall):
		case err != nil:
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			d.Undrain(cctx)
			cancel()
			return fmt.Errorf("draining the API server (nothing was reset): %w", err)
		default:
			defer func() {
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
				defer cancel()
				if err := d.Undrain(cctx); err != nil {
					o.Status.Printf("%s: putting the server back in the load balancer's rotation: %v", in.Name, err)
				}
			}()
		}
	}
	removed := false
	if in.Role == inventory.RoleControlPlane && other != nil {
		// Leave etcd first, through the other control plane: kubeadm reset
		// would try the same from this node, which may not reach etcd.
		if err := leaveEtcd(ctx, other, in); err != nil {
			return fmt.Errorf("leaving etcd through %s (nothing was reset): %w", other.first, err)
		}
		removed = true
	}
	var opts []node.ExecOption
	if o.Stream && o.Status != nil {
		w := node.PrefixWriter(o.Status, in.Name+": ", o.Redactor)
		defer w.Flush()
		opts = append(opts, node.StreamStdout(w), node.StreamStderr(w))
	}
	// kubeadm reset where kubeadm is installed (a node whose init failed
	// before may lack it), then what kubeadm reset leaves behind.
	cmd := "if command -v kubeadm >/dev/null; then kubeadm reset -f --cri-socket " + CRISocket
	if removed {
		cmd += " --skip-phases remove-etcd-member"
	}
	cmd += "; fi"
	if _, err := n.Run(ctx, cmd, opts...); err != nil {
		return fmt.Errorf("kubeadm reset: %w", err)
	}
	if _, err := n.Run(ctx, resetLeftovers); err != nil {
		return fmt.Errorf("removing what kubeadm reset leaves: %w", err)
	}
	if other != nil {
		if _, err := other.kubectl(ctx, "delete node "+in.Name+" --ignore-not-found"); err != nil {
			return err
		}
	}
	return nil
}

// leaveEtcd removes in's etcd member (by name or peer address) through
// other's etcd, and checks that it is gone.
func leaveEtcd(ctx context.Context, other *run, in inventory.Node) error {
	cli, err := other.etcdClient(ctx)
	if err != nil {
		return err
	}
	defer cli.Close()
	_, err = cli.RemoveNodeMembers(ctx, in.Name, in.InternalIP())
	return err
}
