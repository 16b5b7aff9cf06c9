package renew

import (
	"context"
	"fmt"

	"github.com/kbootstrap/kbootstrap/kubeadm"
)

// restore puts the manifests back, extracts the backup over the files and
// restarts the static pods, gated on their health as in a renewal.
func (o Options) restore(ctx context.Context, t *target, backup string) error {
	cmd := fmt.Sprintf(`set -e; for f in %[1]s/*.yaml; do [ -e "$f" ] || continue; mv -f "$f" %[2]s/; done
tar -xzf %[3]s -C %[4]s`, asideDir, kubeadm.ManifestsDir, backup, kubeadm.KubernetesDir)
	if _, err := t.n.Run(ctx, cmd); err != nil {
		return err
	}
	return o.restartAll(ctx, t, components)
}

// rollback restores the node's backup after a failed step.
func (r *nodeRun) rollback(ctx context.Context) error {
	st := r.o.Status.Start(r.t.name + ": restoring " + r.archive)
	err := r.o.restore(ctx, r.t, r.archive)
	st.End(err)
	return err
}
