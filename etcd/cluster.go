package etcd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/node"
	"github.com/kbootstrap/kbootstrap/report"
)

func connect(ctx context.Context, c node.Connector, n inventory.Node) (node.Node, error) {
	nn, err := c.Connect(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("node %s: connect: %w", n.Name, err)
	}
	return nn, nil
}

// CollectFlags discovers the kube-apiserver's etcd flags on every node. It
// returns the nodes that answered, in inventory order, and the errors of the
// others joined.
func CollectFlags(ctx context.Context, c node.Connector, nodes []inventory.Node, concurrency int) ([]NodeFlags, error) {
	res, err := node.Parallel(ctx, nodes, concurrency, func(ctx context.Context, in inventory.Node) (*NodeFlags, error) {
		n, err := connect(ctx, c, in)
		if err != nil {
			return nil, err
		}
		f, err := DiscoverFlags(ctx, n)
		if err != nil {
			return nil, err
		}
		return &f, nil
	})
	var out []NodeFlags
	for _, f := range res {
		if f != nil {
			out = append(out, *f)
		}
	}
	return out, err
}

// MembersReport is the member list as one control plane's API server sees
// it, with each member's status.
type MembersReport struct {
	Node     string           `json:"node"`
	Members  []Member         `json:"members"`
	Statuses []EndpointStatus `json:"statuses"`
	// Failed are the errors of the control planes tried before Node.
	Failed []error `json:"-"`
}

// MembersOptions tune ListMembers.
type MembersOptions struct {
	// Status also asks every member for its status.
	Status  bool
	Timeout time.Duration
}

// ListMembers asks etcd for its members through the first control plane of
// nodes that answers, with that node's kube-apiserver credentials. Errors of
// the nodes tried before are returned joined only when none answered.
func ListMembers(ctx context.Context, c node.Connector, nodes []inventory.Node, opts MembersOptions) (MembersReport, error) {
	var errs []error
	for _, in := range nodes {
		rep, err := membersVia(ctx, c, in, opts)
		if err == nil {
			rep.Failed = errs
			return rep, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return MembersReport{}, errors.Join(errs...)
}

func membersVia(ctx context.Context, c node.Connector, in inventory.Node, opts MembersOptions) (MembersReport, error) {
	n, err := connect(ctx, c, in)
	if err != nil {
		return MembersReport{}, err
	}
	return MembersOf(ctx, n, opts)
}

// MembersOf lists etcd's members as n's kube-apiserver sees them.
func MembersOf(ctx context.Context, n node.Node, opts MembersOptions) (MembersReport, error) {
	cli, err := ConnectAsAPIServer(ctx, n, ClientOptions{Timeout: opts.Timeout})
	if err != nil {
		return MembersReport{}, err
	}
	defer cli.Close()
	rep := MembersReport{Node: n.Name()}
	if opts.Status {
		rep.Members, rep.Statuses, err = cli.MembersStatus(ctx)
	} else {
		rep.Members, err = cli.Members(ctx)
	}
	return rep, err
}

// SnapshotFrom saves a snapshot of the etcd that n's kube-apiserver uses,
// from the first of its --etcd-servers, into file on this machine.
func SnapshotFrom(ctx context.Context, n node.Node, file string, opts SnapshotOptions, timeout time.Duration) (SnapshotResult, error) {
	f, err := DiscoverFlags(ctx, n)
	if err != nil {
		return SnapshotResult{Node: n.Name(), File: file}, err
	}
	cli, err := Connect(ctx, n, f.ClientFlags, ClientOptions{Timeout: timeout, Endpoints: f.Endpoints[:1]})
	if err != nil {
		return SnapshotResult{Node: n.Name(), File: file}, err
	}
	defer cli.Close()
	return cli.SaveSnapshot(ctx, file, opts)
}

// SnapshotVia connects to the named control plane (the first of nodes when
// name is empty) and saves a snapshot into file.
func SnapshotVia(ctx context.Context, c node.Connector, nodes []inventory.Node, name, file string, opts SnapshotOptions, timeout time.Duration) (SnapshotResult, error) {
	i := 0
	if name != "" {
		i = slices.IndexFunc(nodes, func(n inventory.Node) bool { return n.Name == name })
		if i < 0 {
			return SnapshotResult{}, fmt.Errorf("--node %s: not a selected control plane", name)
		}
	}
	n, err := connect(ctx, c, nodes[i])
	if err != nil {
		return SnapshotResult{}, err
	}
	return SnapshotFrom(ctx, n, file, opts, timeout)
}

// AuditAll audits every node; a node that cannot be reached is a failed
// finding.
func AuditAll(ctx context.Context, c node.Connector, nodes []inventory.Node, concurrency int, opts AuditOptions) (*report.Findings, error) {
	res, _ := node.Parallel(ctx, nodes, concurrency, func(ctx context.Context, in inventory.Node) ([]report.Finding, error) {
		n, err := connect(ctx, c, in)
		if err != nil {
			return []report.Finding{{Node: in.Name, Check: "node.connect", Severity: report.Fail, Message: err.Error()}}, nil
		}
		fs, _ := Audit(ctx, n, opts)
		return fs, nil
	})
	out := &report.Findings{}
	for _, fs := range res {
		out.Findings = append(out.Findings, fs...)
	}
	return out, ctx.Err()
}
