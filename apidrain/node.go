package apidrain

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/kbootstrap/kbootstrap/kubeadm"
	"github.com/kbootstrap/kbootstrap/node"
)

// ErrNoFirewall: the node method cannot drain a node without iptables; the
// caller goes on undrained and says so.
var ErrNoFirewall = errors.New("no iptables on the node: not drained")

// rule refuses new connections to the API server from other hosts.
const rule = "INPUT -p tcp --dport " + kubeadm.APIServerPort + " --syn ! -i lo -j REJECT --reject-with tcp-reset"

// nodeDrainer refuses new connections on the control plane itself and
// waits for the load balancer to notice.
type nodeDrainer struct {
	n           node.Node
	wait        time.Duration
	noReadyWait bool
}

func (d *nodeDrainer) Method() string {
	return "a firewall rule on " + d.n.Name() + " refusing new connections to port " + kubeadm.APIServerPort
}

func (d *nodeDrainer) Drain(ctx context.Context) error {
	res, err := d.n.Run(ctx, "command -v iptables || true")
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(res.Stdout)) == "" {
		return ErrNoFirewall
	}
	if _, err := d.n.Run(ctx, "iptables -w -C "+rule+" 2>/dev/null || iptables -w -I "+rule); err != nil {
		return err // the rule may be in: Undrain (idempotent) will see
	}
	return sleep(ctx, d.wait)
}

func (d *nodeDrainer) Undrain(ctx context.Context) error {
	if _, err := d.n.Run(ctx, "command -v iptables >/dev/null || exit 0; while iptables -w -C "+rule+" 2>/dev/null; do iptables -w -D "+rule+"; done"); err != nil {
		return err
	}
	if d.noReadyWait {
		return nil
	}
	return sleep(ctx, d.wait)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
