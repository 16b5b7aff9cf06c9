package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/kubeadm"
	"github.com/kbootstrap/kbootstrap/node"
	"github.com/kbootstrap/kbootstrap/progress"
)

// adminRun connects to the control planes and picks the first holding
// admin.conf.
func adminRun(ctx context.Context, inv *inventory.Inventory, conn node.Connector, r *node.Redactor, st *progress.Status, exclude ...string) (*run, error) {
	if r == nil {
		r = &node.Redactor{}
	}
	c := &run{opts: Options{Inventory: inv, Connector: conn, Redactor: r, Status: st, ReadyTimeout: 2 * time.Minute},
		inv: inv, endpoint: inv.Endpoint(), nodes: map[string]node.Node{}, facts: map[string]*Facts{}, log: slog.New(slog.DiscardHandler)}
	var errs []error
	for _, in := range inv.ByRole(inventory.RoleControlPlane) {
		if strings.Contains(" "+strings.Join(exclude, " ")+" ", " "+in.Name+" ") {
			continue
		}
		n, err := conn.Connect(ctx, in)
		if err != nil {
			errs = append(errs, &node.NodeError{Node: in.Name, Err: err})
			continue
		}
		n = node.Sudo(n)
		if _, err := n.Stat(ctx, kubeadm.AdminConf); err != nil {
			continue
		}
		if _, err := n.Run(ctx, kubectlCmd+" --server https://"+net.JoinHostPort(in.InternalIP(), "6443")+" get --raw /readyz", node.HideOutput()); err != nil {
			errs = append(errs, &node.NodeError{Node: in.Name, Err: fmt.Errorf("API server not answering: %w", err)})
			continue
		}
		c.nodes[in.Name] = n
		c.first = in.Name
		c.certKey = ""
		return c, nil
	}
	return nil, errors.Join(append([]error{errNoCluster}, errs...)...)
}

// JoinCommandOptions configure JoinCommand.
type JoinCommandOptions struct {
	Inventory    *inventory.Inventory
	Connector    node.Connector
	ControlPlane bool
	Redactor     *node.Redactor
}

// JoinCommand is a join command line for a human.
type JoinCommand struct {
	Command string
	// TokenTTL is how long the token is valid; CertificatesTTL how long the
	// uploaded certificates are (control plane only).
	TokenTTL, CertificatesTTL time.Duration
}

// NewJoinCommand creates a bootstrap token (24h) on a control plane and
// returns `kubeadm join ...` with it; for a control plane the certificates
// are uploaded again under a new certificate key, added with
// --control-plane --certificate-key. The user asked for exactly these
// secrets: they are returned, never logged.
func NewJoinCommand(ctx context.Context, o JoinCommandOptions) (*JoinCommand, error) {
	c, err := adminRun(ctx, o.Inventory, o.Connector, o.Redactor, nil)
	if err != nil {
		return nil, err
	}
	res, err := c.nodes[c.first].Run(ctx, "kubeadm token create --ttl 24h0m0s --description 'kbootstrap join-command' --print-join-command", node.HideOutput())
	if err != nil {
		return nil, fmt.Errorf("node %s: kubeadm token create: %w", c.first, err)
	}
	line := ""
	for _, l := range strings.Split(string(res.Stdout), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "kubeadm join ") {
			line = strings.TrimSpace(l)
		}
	}
	if line == "" {
		return nil, fmt.Errorf("node %s: kubeadm token create printed no join command", c.first)
	}
	out := &JoinCommand{Command: line, TokenTTL: 24 * time.Hour}
	if o.ControlPlane {
		// Plain kubeadm: the user's node may not have containerd's socket
		// as default; the command is what kubeadm printed.
		c.cluster = ClusterParams{Name: o.Inventory.Name, KubernetesVersion: o.Inventory.KubernetesVersion, ControlPlaneEndpoint: c.endpoint,
			PodSubnet: o.Inventory.PodSubnet, ServiceSubnet: o.Inventory.ServiceSubnet, DNSDomain: o.Inventory.DNSDomain}
		if err := c.ensureCerts(ctx); err != nil {
			return nil, err
		}
		out.Command += " --control-plane --certificate-key " + c.certKey
		out.CertificatesTTL = certsSecretTTL
	}
	return out, nil
}
