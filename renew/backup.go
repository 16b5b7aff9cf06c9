package renew

import (
	"context"
	"fmt"

	"github.com/kbootstrap/kbootstrap/kubeadm"
	"github.com/kbootstrap/kbootstrap/node"
)

// backup archives the PKI and the kubeconfigs (mode 0600) and keeps the
// last o.Keep archives.
func (o Options) backup(ctx context.Context, n node.Node) (string, error) {
	f := BackupDir + "/kubernetes-" + o.Now().UTC().Format("20060102T150405Z") + ".tar.gz"
	cmd := fmt.Sprintf(`set -e; umask 077; mkdir -p %[1]s; chmod 700 %[1]s; cd %[2]s
tar -czf %[3]s.tmp pki $(ls *.conf)
chmod 600 %[3]s.tmp; mv -f %[3]s.tmp %[3]s
ls -1t %[1]s/kubernetes-*.tar.gz | tail -n +%[4]d | xargs -r rm -f`, BackupDir, kubeadm.KubernetesDir, f, o.Keep+1)
	if _, err := n.Run(ctx, cmd); err != nil {
		return "", err
	}
	return f, nil
}

// takeBackup is the "backup" step: nothing has changed yet when it fails.
func (r *nodeRun) takeBackup(ctx context.Context) error {
	st := r.o.Status.Start(r.t.name + ": backup of " + kubeadm.KubernetesDir)
	f, err := r.o.backup(ctx, r.t.n)
	st.End(err)
	if err != nil {
		return fmt.Errorf("node %s: backup: %w (nothing changed)", r.t.name, err)
	}
	r.archive = f
	r.o.Status.Printf("%s: backup %s", r.t.name, f)
	return nil
}
