package kubeadm

import (
	"bytes"
	"context"
	"fmt"
	"os"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/kbootstrap/kbootstrap/internal/atomicfile"
	"github.com/kbootstrap/kbootstrap/node"
)

// DefaultKubeconfigPath is where a cluster's admin kubeconfig is written on
// the workstation unless told otherwise.
func DefaultKubeconfigPath(cluster string) string { return "./" + cluster + ".kubeconfig" }

// AdminKubeconfig turns a node's admin.conf into the workstation's: every
// cluster's server is https://endpoint.
func AdminKubeconfig(raw []byte, endpoint string) ([]byte, error) {
	cfg, err := clientcmd.Load(raw)
	if err != nil {
		return nil, err
	}
	for _, cl := range cfg.Clusters {
		cl.Server = "https://" + endpoint
	}
	return clientcmd.Write(*cfg)
}

// WriteAdminKubeconfig reads n's admin.conf and writes it, pointed at
// endpoint, to path on this machine (mode 0600, atomically) unless path
// already holds exactly that; it reports whether it wrote.
func WriteAdminKubeconfig(ctx context.Context, n node.Node, endpoint, path string) (bool, error) {
	raw, err := n.ReadFile(ctx, AdminConf)
	if err != nil {
		return false, fmt.Errorf("node %s: %w", n.Name(), err)
	}
	out, err := AdminKubeconfig(raw, endpoint)
	if err != nil {
		return false, fmt.Errorf("node %s: %s: %w", n.Name(), AdminConf, err)
	}
	if have, err := os.ReadFile(path); err == nil && bytes.Equal(have, out) {
		return false, os.Chmod(path, 0o600)
	}
	if err := atomicfile.WriteBytes(path, out, atomicfile.Options{Mode: 0o600}); err != nil {
		return false, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	return true, nil
}
