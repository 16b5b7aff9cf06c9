package bootstrap

import (
	"bytes"
	"context"
	"fmt"
	"os"

	"k8s.io/client-go/tools/clientcmd"
)

type kubeconfigPhase struct{}

func (p *kubeconfigPhase) Name() string                        { return "kubeconfig" }
func (p *kubeconfigPhase) Title() string                       { return "Kubeconfig" }
func (p *kubeconfigPhase) Prepare(context.Context, *run) error { return nil }
func (p *kubeconfigPhase) ShouldRun() bool                     { return true }
func (p *kubeconfigPhase) Plan() []string {
	return []string{"admin.conf of the first control plane, its server set to the control-plane endpoint, written with mode 0600"}
}

func (p *kubeconfigPhase) Run(ctx context.Context, c *run) error {
	path := c.kubeconfigPath()
	st := c.status().Start("Kubeconfig " + path)
	changed, err := c.writeKubeconfig(ctx, path)
	if err == nil && changed {
		c.addChanged(1)
	} else if err == nil {
		st.SetTitle(st.Title() + ": unchanged")
	}
	st.End(err)
	return err
}

// writeKubeconfig fetches admin.conf, points it at the endpoint and writes
// it to path (0600) unless it already holds exactly that.
func (c *run) writeKubeconfig(ctx context.Context, path string) (bool, error) {
	raw, err := c.nodes[c.first].ReadFile(ctx, adminConf)
	if err != nil {
		return false, fmt.Errorf("node %s: %w", c.first, err)
	}
	cfg, err := clientcmd.Load(raw)
	if err != nil {
		return false, fmt.Errorf("node %s: %s: %w", c.first, adminConf, err)
	}
	for _, cl := range cfg.Clusters {
		cl.Server = "https://" + c.endpoint
	}
	out, err := clientcmd.Write(*cfg)
	if err != nil {
		return false, err
	}
	if have, err := os.ReadFile(path); err == nil && bytes.Equal(have, out) {
		return false, os.Chmod(path, 0o600)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, out, 0o600); err != nil {
		return false, err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return false, err
	}
	return true, os.Rename(tmp, path)
}
