package renew

import (
	"context"
	"fmt"
	"strings"

	"github.com/kbootstrap/kbootstrap/kubeadm"
)

// restore puts the manifests back, extracts the backup over the files and
// restarts the static pods of comps (those that read the renewed files),
// gated on the health of all as in a renewal. A static pod not restarted
// since the renewal still runs with the files of the backup (those that
// reload their certificates, the API server's serving one and etcd's, read
// the restored files again), so it is not restarted.
func (o Options) restore(ctx context.Context, t *target, backup string, comps []string) error {
	cmd := fmt.Sprintf(`set -e; for f in %[1]s/*.yaml; do [ -e "$f" ] || continue; mv -f "$f" %[2]s/; done
tar -xzf %[3]s -C %[4]s`, asideDir, kubeadm.ManifestsDir, backup, kubeadm.KubernetesDir)
	if _, err := t.n.Run(ctx, cmd); err != nil {
		return err
	}
	return o.restartAll(ctx, t, comps, nil)
}

// rollback restores the node's backup after a failed step.
func (r *nodeRun) rollback(ctx context.Context) error {
	what := "no static pod restarted yet"
	if len(r.restarted) > 0 {
		what = "restarting " + strings.Join(r.restarted, ", ")
	}
	st := r.o.Status.Start(r.t.name + ": restoring " + r.archive + " (" + what + ")")
	err := r.o.restore(ctx, r.t, r.archive, r.restarted)
	st.End(err)
	return err
}
