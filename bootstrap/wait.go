package bootstrap

import (
	"context"
	"errors"
	"fmt"

	"github.com/kbootstrap/kbootstrap/internal/poll"
	"github.com/kbootstrap/kbootstrap/inventory"
)

// waitEtcdMember waits until in's etcd member is started (has a name and
// client URLs) and its endpoint answers.
func (c *run) waitEtcdMember(ctx context.Context, in inventory.Node) error {
	cli, err := c.etcdClient(ctx)
	if err != nil {
		return err
	}
	defer cli.Close()
	return poll.Until(ctx, c.opts.ReadyTimeout, pollInterval, "node "+in.Name+": etcd member healthy", func(ctx context.Context) error {
		ms, err := cli.Members(ctx)
		if err != nil {
			return err
		}
		for _, m := range ms {
			if m.Name != in.Name {
				continue
			}
			if len(m.ClientURLs) == 0 || m.IsLearner {
				return fmt.Errorf("etcd member %s is not started yet", m.ID)
			}
			if err := cli.Status(ctx, m.ClientURLs[0]).Problem(); err != nil {
				return fmt.Errorf("etcd member %s: %w", m.ID, err)
			}
			return nil
		}
		return fmt.Errorf("no etcd member named %s", in.Name)
	})
}

// waitReady waits until the Node is Ready.
func (c *run) waitReady(ctx context.Context, name string) error {
	err := poll.Until(ctx, c.opts.ReadyTimeout, pollInterval, "node "+name+": Ready", func(ctx context.Context) error {
		nodes, err := c.clusterNodes(ctx)
		if err != nil {
			return err
		}
		cn, ok := nodes[name]
		switch {
		case !ok:
			return errors.New("no Node object yet")
		case !cn.Ready:
			return errors.New("not Ready")
		}
		return nil
	})
	if err == nil {
		c.mu.Lock()
		c.facts[name].Ready = true
		c.mu.Unlock()
	}
	return err
}
