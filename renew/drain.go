package renew

import (
	"context"
	"strings"
	"time"

	"github.com/kbootstrap/kbootstrap/node"
)

const drainRule = "INPUT -p tcp --dport 6443 --syn ! -i lo -j REJECT --reject-with tcp-reset"

// drain refuses new connections to the API server from other hosts, so that
// the load balancer's check marks it down while kept-alive connections carry
// on, then waits for the load balancer to notice. No iptables: no drain.
func (o Options) drain(ctx context.Context, n node.Node) (bool, error) {
	res, err := n.Run(ctx, "command -v iptables || true")
	if err != nil {
		return false, err
	}
	if strings.TrimSpace(string(res.Stdout)) == "" {
		return false, nil
	}
	if _, err := n.Run(ctx, "iptables -w -C "+drainRule+" 2>/dev/null || iptables -w -I "+drainRule); err != nil {
		return true, err // the rule may be in: undrain (idempotent) will see
	}
	return true, sleep(ctx, o.DrainWait)
}

func (o Options) undrain(ctx context.Context, n node.Node) error {
	if _, err := n.Run(ctx, "while iptables -w -C "+drainRule+" 2>/dev/null; do iptables -w -D "+drainRule+"; done"); err != nil {
		return err
	}
	return sleep(ctx, o.DrainWait)
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
