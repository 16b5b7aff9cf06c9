// Package apidrain takes one control plane's API server out of the load
// balancer's rotation before it restarts, and puts it back once it is ready:
// the one drain mechanism of certs renew, upgrade and the removal of a
// control plane.
//
// Two methods, chosen per run by For:
//   - haproxy: the load balancer is the one kbootstrap installs (playbook
//     loadbalancer) on the inventory's loadbalancer nodes. Through haproxy's
//     runtime API on each of them the server goes to state drain (no new
//     connection is sent to it, the open ones carry on), then, once its
//     connections are gone or after a bound, to maint with its remaining
//     sessions shut (clients reconnect elsewhere); Undrain sets it ready
//     and waits until every haproxy sees it UP again by its /readyz check.
//     The node itself never refuses anything, so no client ever meets a
//     refused connection.
//   - node: any other load balancer. A firewall rule on the control plane
//     refuses new connections to the API server port from other hosts, and
//     the drain waits the time a load balancer's health check takes to mark
//     it down; Undrain removes the rule. A load balancer that does not retry
//     a refused connection on another server passes the refusal on to the
//     clients it sends there meanwhile (see the README).
package apidrain

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/node"
)

// Drainer takes one control plane's API server out of rotation and back.
// Undrain is idempotent and must run on every way out of a drain,
// interrupted or not, with a context of its own.
type Drainer interface {
	// Method says how, for progress lines: "haproxy on lb1, lb2", "a
	// firewall rule on cp1".
	Method() string
	Drain(ctx context.Context) error
	Undrain(ctx context.Context) error
}

// Options choose and configure the drain of one control plane.
type Options struct {
	// Inventory and Connector reach the load balancers; without them (a run
	// on the control plane itself, from cron) the node method is used.
	Inventory *inventory.Inventory
	Connector node.Connector
	// Node is the control plane, as root (node.Sudo); Name its inventory
	// name, which is its server name in kbootstrap's haproxy.
	Node node.Node
	Name string
	// DrainWait: haproxy: how long the server's open connections may take
	// to finish before the rest are shut (default 5s); node: how long the
	// load balancer takes to see the server down (default 8s: haproxy's
	// inter 2s × fall 3, and a margin).
	DrainWait time.Duration
	// ReadyWait bounds Undrain's wait for every haproxy to see the server UP
	// again (default 30s); negative: Undrain puts the server back and does
	// not wait (a node being reset: its health check keeps it out until it
	// serves again).
	ReadyWait time.Duration
}

// Why the node method was chosen, for the caller to say.
var (
	ErrNoLoadBalancer = errors.New("the inventory has no loadbalancer node")
	ErrNotManaged     = errors.New("its haproxy has no kbootstrap runtime API (run the loadbalancer playbook again)")
)

// For returns the haproxy drainer when every load balancer of the inventory
// runs kbootstrap's haproxy with its runtime API and knows the server, else
// the node drainer and why (ErrNoLoadBalancer, ErrNotManaged or the probe's
// error, matchable with errors.Is).
func For(ctx context.Context, o Options) (Drainer, error) {
	nodeMethod := &nodeDrainer{n: o.Node, wait: o.DrainWait, noReadyWait: o.ReadyWait < 0}
	if nodeMethod.wait == 0 {
		nodeMethod.wait = 8 * time.Second
	}
	if o.Inventory == nil || o.Connector == nil {
		return nodeMethod, ErrNoLoadBalancer
	}
	lbs := o.Inventory.ByRole(inventory.RoleLoadBalancer)
	if len(lbs) == 0 {
		return nodeMethod, ErrNoLoadBalancer
	}
	h := &haproxyDrainer{server: o.Name, drainWait: o.DrainWait, readyWait: o.ReadyWait}
	if h.drainWait == 0 {
		h.drainWait = 5 * time.Second
	}
	if h.readyWait == 0 {
		h.readyWait = 30 * time.Second
	}
	for _, in := range lbs {
		n, err := o.Connector.Connect(ctx, in)
		if err != nil {
			return nodeMethod, fmt.Errorf("load balancer %s: %w", in.Name, err)
		}
		lb := &haproxyLB{name: in.Name, n: node.Sudo(n)}
		if err := lb.probe(ctx, o.Name); err != nil {
			return nodeMethod, fmt.Errorf("load balancer %s: %w", in.Name, err)
		}
		h.lbs = append(h.lbs, lb)
	}
	return h, nil
}
