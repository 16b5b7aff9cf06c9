package bootstrap

import (
	"context"

	"github.com/kbootstrap/kbootstrap/kubeadm"
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

// writeKubeconfig writes the first control plane's admin.conf, pointed at
// the endpoint, to path (0600) unless it already holds exactly that.
func (c *run) writeKubeconfig(ctx context.Context, path string) (bool, error) {
	return kubeadm.WriteAdminKubeconfig(ctx, c.nodes[c.first], c.endpoint, path)
}
