package etcd

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/kbootstrap/kbootstrap/node"
)

// ConnectAsAPIServer connects to etcd exactly as n's kube-apiserver does:
// its --etcd-servers, --etcd-cafile, --etcd-certfile and --etcd-keyfile, from
// its running process or else its manifest, the credentials read from n into
// memory. opts.Endpoints, when given, replace the flags' own (one member, for
// a snapshot or a member's health). It reads the flags and files on every
// call, on purpose: a gate after a renewal proves the credentials the API
// server loads now, never a client connected before they changed. Close it.
func ConnectAsAPIServer(ctx context.Context, n node.Node, opts ClientOptions) (*Client, error) {
	f, err := DiscoverFlags(ctx, n)
	if err != nil {
		return nil, err
	}
	return Connect(ctx, n, f.ClientFlags, opts)
}

// Health checks that every etcd member is started, a voter, and answers its
// status without errors or alarms; it names every member that does not.
func (c *Client) Health(ctx context.Context) error {
	ms, sts, err := c.MembersStatus(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for i, m := range ms {
		if m.IsLearner {
			errs = append(errs, fmt.Errorf("etcd member %s (%s) is a learner", m.Name, m.ID))
		} else if err := sts[i].Problem(); err != nil {
			errs = append(errs, fmt.Errorf("etcd member %s (%s): %w", m.Name, m.ID, err))
		}
	}
	return errors.Join(errs...)
}

// OfNode reports whether m is the member of the node called name with the
// internal address ip: its name, or a peer URL on ip (a member added by a
// join that never started has no name yet).
func (m Member) OfNode(name, ip string) bool {
	if m.Name != "" && m.Name == name {
		return true
	}
	for _, u := range m.PeerURLs {
		if ep, err := ParseEndpoint(u); err == nil && ep.ServerName == ip {
			return true
		}
	}
	return false
}

// FindMembers returns the members for which match is true.
func FindMembers(ms []Member, match func(Member) bool) []Member {
	var out []Member
	for _, m := range ms {
		if match(m) {
			out = append(out, m)
		}
	}
	return out
}

// RemoveMember removes m from the cluster.
func (c *Client) RemoveMember(ctx context.Context, m Member) error {
	id, err := strconv.ParseUint(m.ID, 16, 64)
	if err != nil {
		return fmt.Errorf("etcd member id %q: %w", m.ID, err)
	}
	return c.call(ctx, "member remove "+m.ID, func(ctx context.Context) error {
		_, err := c.MemberRemove(ctx, id)
		return err
	})
}

// RemoveNodeMembers removes every member of the node called name with
// internal address ip (see OfNode) and checks that none is left; it returns
// the ids it removed.
func (c *Client) RemoveNodeMembers(ctx context.Context, name, ip string) ([]string, error) {
	ms, err := c.Members(ctx)
	if err != nil {
		return nil, err
	}
	of := func(m Member) bool { return m.OfNode(name, ip) }
	var removed []string
	for _, m := range FindMembers(ms, of) {
		if err := c.RemoveMember(ctx, m); err != nil {
			return removed, err
		}
		removed = append(removed, m.ID)
	}
	ms, err = c.Members(ctx)
	if err != nil {
		return removed, err
	}
	if left := FindMembers(ms, of); len(left) > 0 {
		var ids []string
		for _, m := range left {
			ids = append(ids, m.ID)
		}
		return removed, fmt.Errorf("etcd member %s of %s is still there", strings.Join(ids, ", "), name)
	}
	return removed, nil
}

// HandOffLeadership makes another member the leader when the member the
// client reaches (its first endpoint: a node's own member) leads: the
// started voter that answers without problems and has applied the most, as
// etcd's own graceful stop would choose, but before the member stops, while
// every member is healthy, so that its restart is a follower's and no
// election happens meanwhile. It returns the new leader, or nil when the
// member did not lead. The client has that one endpoint: etcd moves the
// leadership only when the leader itself is asked.
func (c *Client) HandOffLeadership(ctx context.Context) (*Member, error) {
	if len(c.endpoints) != 1 {
		return nil, fmt.Errorf("node %s: hand off the etcd leadership through %d endpoints: want the member's own, alone", c.node, len(c.endpoints))
	}
	self := c.Status(ctx, c.endpoints[0])
	if err := self.Problem(); err != nil {
		return nil, fmt.Errorf("etcd member at %s on %s: %w", c.endpoints[0], c.node, err)
	}
	if !self.Leader {
		return nil, nil
	}
	ms, sts, err := c.MembersStatus(ctx)
	if err != nil {
		return nil, err
	}
	best := -1
	for i, m := range ms {
		if m.ID == self.MemberID || m.IsLearner || sts[i].Problem() != nil {
			continue
		}
		if best < 0 || sts[i].RaftIndex > sts[best].RaftIndex {
			best = i
		}
	}
	if best < 0 {
		return nil, fmt.Errorf("etcd member %s on %s leads and no other member is healthy to take over", self.MemberID, c.node)
	}
	to := ms[best]
	id, err := strconv.ParseUint(to.ID, 16, 64)
	if err != nil {
		return nil, fmt.Errorf("etcd member id %q: %w", to.ID, err)
	}
	if err := c.call(ctx, "move leader to "+to.ID, func(ctx context.Context) error {
		_, err := c.MoveLeader(ctx, id)
		return err
	}); err != nil {
		return nil, err
	}
	return &to, nil
}
