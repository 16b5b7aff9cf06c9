package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kbootstrap/kbootstrap/test/lab"
)

// The e2e tests' helpers, each a thin adaptor over the lab's test kit
// (test/lab/testkit.go): run on a node, wait for a condition, write an
// inventory of lab nodes.

// labExec runs a shell command as root inside a node of the shared lab.
func labExec(t *testing.T, nodeName, cmd string) string {
	t.Helper()
	return labExecIn(t, sharedLab(t), nodeName, cmd)
}

// labExecIn runs a shell command as root inside a node (no SSH) and returns
// its output as it is; a failure ends the test.
func labExecIn(t *testing.T, l *lab.Lab, nodeName, cmd string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := l.Sh(ctx, nodeName, cmd)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// nodeSh runs a bash script on a lab node over ssh as root, as a user
// would, and returns its trimmed output.
func nodeSh(t *testing.T, l *lab.Lab, node, script string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return l.SSH(ctx, node, "root", script)
}

// mustSh is nodeSh whose failure ends the test.
func mustSh(t *testing.T, l *lab.Lab, node, script string) string {
	t.Helper()
	out, err := nodeSh(t, l, node, script)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitUntil polls f every second until it returns nil; after timeout the
// test ends naming what was awaited and f's last error.
func waitUntil(t *testing.T, what string, timeout time.Duration, f func() error) {
	t.Helper()
	if err := lab.WaitFor(timeout, time.Second, f); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// waitFor polls cond every 100 ms until it holds.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	if err := lab.WaitFor(timeout, 100*time.Millisecond, func() error {
		if !cond() {
			return errors.New("condition not met")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// waitSh polls a script on a node until it succeeds.
func waitSh(t *testing.T, l *lab.Lab, node, what string, timeout time.Duration, script string) {
	t.Helper()
	waitUntil(t, node+": "+what, timeout, func() error { _, err := nodeSh(t, l, node, script); return err })
}

// waitSystemd waits until systemd runs (not degraded) on each named node.
func waitSystemd(t *testing.T, l *lab.Lab, names ...string) {
	t.Helper()
	for _, n := range names {
		waitUntil(t, n+": systemd running", 90*time.Second, func() error {
			_, err := l.Sh(context.Background(), n, `s=$(systemctl is-system-running || true); [ "$s" = running ] || { echo "$s"; exit 1; }`)
			return err
		})
	}
}

// writeFile writes a test file and returns its path.
func writeFile(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// invNode is one node of a generated inventory.
type invNode = lab.InventoryNode

// labNodes are every node of l with its first address.
func labNodes(t *testing.T, l *lab.Lab) []invNode {
	t.Helper()
	ns, err := l.InventoryNodes(false)
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// inventoryFor writes an inventory for nodes named after the lab, with the
// lab's key and the given known_hosts and ssh user.
func inventoryFor(t *testing.T, l *lab.Lab, knownHosts, user string, nodes []invNode) string {
	t.Helper()
	inv := l.InventoryYAML(lab.InventorySpec{Name: l.Config.ID, User: user, KnownHostsFile: knownHosts, Nodes: nodes})
	return writeFile(t, t.TempDir(), "kbootstrap.yaml", inv, 0o644)
}

// kubernetesInventory writes dir/file, the inventory of cluster name over
// the named lab nodes (root with the lab's key; internalAddress = address),
// with extra top-level lines after kubernetesVersion.
func kubernetesInventory(t *testing.T, l *lab.Lab, dir, file, name, extra string, names ...string) string {
	t.Helper()
	if len(names) == 0 {
		t.Fatal("kubernetesInventory: no nodes named")
	}
	nodes, err := l.InventoryNodes(true, names...)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, file, l.InventoryYAML(lab.InventorySpec{Name: name, Extra: extra, Nodes: nodes}), 0o644)
}

// initInventory writes the inventory of the init lab with the named nodes.
func initInventory(t *testing.T, l *lab.Lab, dir string, names ...string) string {
	t.Helper()
	return kubernetesInventory(t, l, dir, "kbootstrap-"+fmt.Sprint(len(names))+".yaml", "init", "", names...)
}
