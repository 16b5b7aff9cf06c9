package kubeadm

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/kbootstrap/kbootstrap/internal/poll"
	"github.com/kbootstrap/kbootstrap/node"
)

// RestartKubelet restarts the kubelet and waits until its /healthz
// answers (systemd's units reloaded first: a new binary or drop-in is
// taken); a kubelet that systemd has to start again (kubeadm's unit
// restarts it 10 s after it exits) fails at once, with its last words.
func RestartKubelet(ctx context.Context, n node.Node) error {
	if _, err := n.Run(ctx, "systemctl daemon-reload && systemctl restart kubelet"); err != nil {
		return err
	}
	restarts := func(ctx context.Context) (int, error) {
		res, err := n.Run(ctx, "systemctl show kubelet -p NRestarts --value")
		if err != nil {
			return 0, err
		}
		return strconv.Atoi(strings.TrimSpace(string(res.Stdout)))
	}
	first, err := restarts(ctx)
	if err != nil {
		return err
	}
	return poll.Until(ctx, time.Minute, time.Second, "the kubelet's /healthz", func(ctx context.Context) error {
		herr := Healthy(ctx, n, Kubelet)
		if herr == nil {
			return nil
		}
		if c, err := restarts(ctx); err == nil && c > first {
			res, _ := n.Run(ctx, "journalctl -u kubelet -n 3 --no-pager -o cat 2>/dev/null | tail -n 3")
			return poll.Stop(fmt.Errorf("the kubelet keeps exiting (systemd started it %d times since): %s", c-first, strings.TrimSpace(string(res.Stdout))))
		}
		return herr
	})
}
