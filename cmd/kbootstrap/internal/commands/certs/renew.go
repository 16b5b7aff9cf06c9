package certs

import (
	"fmt"
	"time"

	"github.com/kbootstrap/kbootstrap/kubeadm"

	"github.com/spf13/cobra"

	"github.com/kbootstrap/kbootstrap/cmd/kbootstrap/internal/cli"
	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/node"
	"github.com/kbootstrap/kbootstrap/renew"
)

type renewFlags struct {
	within     days
	certs      []string
	dryRun     bool
	local      bool
	kubeconfig string
	keep       int
	textfile   string
}

func newRenew(g *cli.Globals) *cobra.Command {
	f := &renewFlags{within: days(30 * 24 * time.Hour)}
	cmd := &cobra.Command{
		Use:   "renew",
		Short: "Renew certificates, one control plane at a time",
		Long: `Audit the control planes; when a certificate expires within --if-expiring-within,
renew them one control plane at a time: lock the node, back up /etc/kubernetes's
PKI and kubeconfigs to ` + renew.BackupDir + ` (0600, the last --keep kept),
kubeadm certs renew, drain the API server from the load balancer, restart
kube-apiserver, etcd, kube-controller-manager and kube-scheduler one at a time
(manifest moved out, pod stopped, moved back) gated on their health, and verify
that the node serves the new certificates. On any failure the backup is
restored, the node restarted and verified, and the run stops (exit 2).
kubelet.conf is the kubelet's own rotation and is not renewed; a CA that expires
within the window is refused.`,
		Example: `  kbootstrap certs renew --if-expiring-within 30d
  kbootstrap certs renew --local    # on the control plane itself, e.g. from cron
  kbootstrap certs renew --certs scheduler.conf    # renews it and restarts kube-scheduler only`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st := g.Status()
			defer st.Close()
			opts := renew.Options{Within: window(f.within), Certs: f.certs, DryRun: f.dryRun, Keep: f.keep, Textfile: f.textfile, Status: st}
			if f.local {
				opts.Local = node.NewLocal("local", g.Logger)
			} else {
				inv, nodes, pool, err := g.Open(inventory.RoleControlPlane)
				if err != nil {
					return err
				}
				defer pool.Close()
				opts.Inventory, opts.Nodes, opts.Connector = inv, nodes, pool
				opts.KubeconfigOut = f.kubeconfig
				if opts.KubeconfigOut == "" {
					opts.KubeconfigOut = kubeadm.DefaultKubeconfigPath(inv.Name)
				}
			}
			if err := renew.Run(cmd.Context(), opts); err != nil {
				return fmt.Errorf("kbootstrap certs renew: %w", err)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.Var(&f.within, "if-expiring-within", "renew only when a certificate expires within this time (e.g. 30d, 72h)")
	fl.StringSliceVar(&f.certs, "certs", nil, "renew only these (kubeadm's names: apiserver, etcd-server, admin.conf, ...); default all")
	fl.BoolVar(&f.dryRun, "dry-run", false, "audit and print the plan; change nothing")
	fl.BoolVar(&f.local, "local", false, "renew this machine's control plane (run on the node, e.g. from cron)")
	fl.StringVar(&f.kubeconfig, "kubeconfig-out", "", "admin kubeconfig refreshed from the renewed admin.conf (default ./<name>.kubeconfig, mode 0600)")
	fl.IntVar(&f.keep, "keep", 5, "backups kept on each node")
	fl.StringVar(&f.textfile, "textfile", "", "write the run's time and result to this Prometheus textfile (node_exporter's textfile collector), atomically")
	return cmd
}
