package bootstrap

import (
	"context"
	"fmt"
	"strings"

	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/node"
	"github.com/kbootstrap/kbootstrap/progress"
)

// RemoveOptions configure Remove.
type RemoveOptions struct {
	Inventory *inventory.Inventory
	Connector node.Connector
	Node      inventory.Node
	Status    *progress.Status
	// Redactor may be nil.
	Redactor *node.Redactor
}

// Removed says what Remove took out of the cluster.
type Removed struct {
	Node string `json:"node"`
	// Via is the control plane it went through.
	Via string `json:"via"`
	// EtcdMembers are the IDs of the etcd members removed (a control plane).
	EtcdMembers []string `json:"etcdMembers"`
	NodeDeleted bool     `json:"nodeDeleted"`
}

// Remove takes a node that is lost for good out of the cluster through
// another control plane, without touching the node itself (it may be gone):
// its etcd member (by name or peer address) and its Node object. A new
// machine of the same name then joins with `kbootstrap join`.
func Remove(ctx context.Context, o RemoveOptions) (*Removed, error) {
	in := o.Node
	if in.Role == inventory.RoleLoadBalancer {
		return nil, fmt.Errorf("node %s: a load balancer is not in the cluster: nothing to remove", in.Name)
	}
	other, err := adminRun(ctx, o.Inventory, o.Connector, o.Redactor, o.Status, in.Name)
	if err != nil {
		return nil, fmt.Errorf("node %s: no other control plane to remove it through: %w", in.Name, err)
	}
	res := &Removed{Node: in.Name, Via: other.first, EtcdMembers: []string{}}
	if in.Role == inventory.RoleControlPlane {
		err := o.Status.Do(fmt.Sprintf("%s: etcd member removed (through %s)", in.Name, other.first), func() error {
			cli, err := other.etcdClient(ctx)
			if err != nil {
				return err
			}
			defer cli.Close()
			res.EtcdMembers, err = cli.RemoveNodeMembers(ctx, in.Name, in.InternalIP())
			if res.EtcdMembers == nil {
				res.EtcdMembers = []string{}
			}
			return err
		})
		if err != nil {
			return res, err
		}
	}
	err = o.Status.Do(fmt.Sprintf("%s: Node deleted (through %s)", in.Name, other.first), func() error {
		out, err := other.kubectl(ctx, "delete node "+node.ShellQuote(in.Name)+" --ignore-not-found --wait=false")
		res.NodeDeleted = strings.Contains(string(out.Stdout), "deleted")
		return err
	})
	return res, err
}
