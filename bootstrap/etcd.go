package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kbootstrap/kbootstrap/etcd"
	"github.com/kbootstrap/kbootstrap/internal/poll"
	"github.com/kbootstrap/kbootstrap/inventory"
)

// etcdClient reaches etcd through the first control plane as its
// kube-apiserver does.
func (c *run) etcdClient(ctx context.Context) (*etcd.Client, error) {
	return etcd.ConnectAsAPIServer(ctx, c.nodes[c.first], etcd.ClientOptions{Timeout: 10 * time.Second})
}

func (c *run) etcdMembers(ctx context.Context) ([]etcd.Member, error) {
	cli, err := c.etcdClient(ctx)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	return cli.Members(ctx)
}

// removeStrayMember removes an etcd member a failed join of in left behind
// (one not in before, of in by name or peer address), so that the cluster's
// quorum does not count a member that will never start.
func (c *run) removeStrayMember(ctx context.Context, in inventory.Node, before []etcd.Member) error {
	ctx = context.WithoutCancel(ctx)
	cli, err := c.etcdClient(ctx)
	if err != nil {
		return fmt.Errorf("node %s: could not check for an etcd member left by the failed join: %w", in.Name, err)
	}
	defer cli.Close()
	stray := func(m etcd.Member) bool {
		return m.OfNode(in.Name, in.InternalIP()) && !slices.ContainsFunc(before, func(b etcd.Member) bool { return b.ID == m.ID })
	}
	var removed []string
	err = poll.Until(ctx, 10*time.Second, 2*time.Second, "node "+in.Name+": etcd members listed", func(ctx context.Context) error {
		ms, err := cli.Members(ctx)
		if err != nil {
			return err
		}
		var errs []error
		for _, m := range etcd.FindMembers(ms, stray) {
			if err := cli.RemoveMember(ctx, m); err != nil {
				errs = append(errs, fmt.Errorf("etcd member remove %s (%s): %w", m.ID, in.Name, err))
				continue
			}
			removed = append(removed, m.ID)
		}
		if len(errs) > 0 {
			return poll.Stop(errors.Join(errs...))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("node %s: an etcd member of the failed join may be left (check `kbootstrap etcd members`): %w", in.Name, err)
	}
	if len(removed) > 0 {
		msg := fmt.Sprintf("node %s: the failed join had added etcd member %s: removed it, so the cluster's quorum does not wait for it; `kbootstrap reset --host %s` before trying again", in.Name, strings.Join(removed, ", "), in.Name)
		c.status().Printf("• %s", msg)
		return errors.New(msg)
	}
	return nil
}
