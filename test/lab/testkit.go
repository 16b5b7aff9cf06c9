package lab

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// The test kit: what the lab's own tests and the e2e tests use to act on
// and judge lab nodes, in one place (running a script on a node, waiting for
// a condition, an inventory of lab nodes; KubeadmInitConfig is the lab's
// kubeadm configuration).

// Sh runs a shell script as root inside the node (no SSH: nsenter, see
// Exec) and returns its combined output as it is.
func (l *Lab) Sh(ctx context.Context, node, script string) (string, error) {
	out, err := l.Exec(ctx, node, "sh", "-c", script)
	if err != nil {
		return string(out), fmt.Errorf("%s: %q: %w\n%s", node, firstLine(script), err, out)
	}
	return string(out), nil
}

// SSH runs a bash script (bash -eu -o pipefail, on stdin) on the node over
// ssh as user, as a user of the node would, and returns its combined output
// trimmed.
func (l *Lab) SSH(ctx context.Context, node, user, script string) (string, error) {
	args, err := l.SSHArgs(node, user)
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, args[0], append(args[1:], "bash -eu -o pipefail -s")...)
	cmd.Stdin = strings.NewReader(script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	s := strings.TrimSpace(out.String())
	if err != nil {
		return s, fmt.Errorf("%s: %q: %w: %s", node, firstLine(script), err, s)
	}
	return s, nil
}

// WaitFor calls check at once, then every interval, until it returns nil;
// after timeout it returns "not within TIMEOUT: <check's last error>".
func WaitFor(timeout, interval time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s: %w", timeout, err)
		}
		time.Sleep(interval)
	}
}

// InventorySpec is a kbootstrap inventory of lab nodes.
type InventorySpec struct {
	Name string // the cluster's name
	// User is the SSH user (default root); KeyFile and KnownHostsFile
	// default to the lab's.
	User, KeyFile, KnownHostsFile string
	// KubernetesVersion is the inventory's (default: the lab's,
	// KubernetesVersion).
	KubernetesVersion string
	// Extra are raw top-level lines after kubernetesVersion.
	Extra string
	Nodes []InventoryNode
}

// InventoryNode is one node of an InventorySpec.
type InventoryNode struct {
	Name, Address, Role string
	// InternalAddress is written when set.
	InternalAddress string
	// Extra is raw YAML appended to the node (e.g. an ssh block).
	Extra string
}

// InventoryNodes are the named nodes (all, in order, when none are named)
// with their first address, also as internalAddress when internal.
func (l *Lab) InventoryNodes(internal bool, names ...string) ([]InventoryNode, error) {
	if len(names) == 0 {
		for _, n := range l.Nodes {
			names = append(names, n.Name)
		}
	}
	var out []InventoryNode
	for _, name := range names {
		n, ok := l.Node(name)
		if !ok {
			return nil, fmt.Errorf("lab %s: no node %q", l.Config.ID, name)
		}
		in := InventoryNode{Name: n.Name, Address: n.Addresses[0], Role: n.Role}
		if internal {
			in.InternalAddress = n.Addresses[0]
		}
		out = append(out, in)
	}
	return out, nil
}

// InventoryYAML renders spec for l.
func (l *Lab) InventoryYAML(spec InventorySpec) string {
	user, key, kh := spec.User, spec.KeyFile, spec.KnownHostsFile
	if user == "" {
		user = "root"
	}
	if key == "" {
		key = l.KeyFile
	}
	if kh == "" {
		kh = l.KnownHostsFile
	}
	var b strings.Builder
	v := spec.KubernetesVersion
	if v == "" {
		v = KubernetesVersion
	}
	fmt.Fprintf(&b, "name: %s\nkubernetesVersion: %s\n%sssh:\n  user: %s\n  keyFile: %s\n  knownHostsFile: %s\nnodes:\n", spec.Name, v, spec.Extra, user, key, kh)
	for _, n := range spec.Nodes {
		fmt.Fprintf(&b, "  - name: %s\n    address: %s\n", n.Name, n.Address)
		if n.InternalAddress != "" {
			fmt.Fprintf(&b, "    internalAddress: %s\n", n.InternalAddress)
		}
		fmt.Fprintf(&b, "    role: %s\n", n.Role)
		b.WriteString(n.Extra)
	}
	return b.String()
}

// firstLine is a script's first line, for messages.
func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
