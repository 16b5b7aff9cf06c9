// Package upgradecmd is `kbootstrap upgrade`, a thin adaptor over package
// upgrade.
package upgradecmd

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/kbootstrap/kbootstrap/cmd/kbootstrap/internal/cli"
	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/upgrade"
)

type flags struct {
	to, binaries, images, workDir, packageRepository string
	maxUnavailable, keep                             int
	dryRun, yes                                      bool
	timeout, drainTimeout                            time.Duration
}

// NewCommand returns `upgrade`.
func NewCommand(g *cli.Globals) *cobra.Command {
	var f flags
	cmd := &cobra.Command{
		Use:   "upgrade [--to VERSION] [--binaries DIR | --package-repository URL] [--images DIR] [--max-unavailable N] [--dry-run] [--yes]",
		Short: "Upgrade the cluster to the next Kubernetes minor (or a patch), one node at a time",
		Long: `Upgrade the cluster of the inventory to --to (default: the inventory's
kubernetesVersion), as kubeadm's own procedure, one node at a time.

Before any change: the version skew policy (one minor at a time, no downgrade,
no kubelet newer than the API servers), every node reachable and Ready, etcd
healthy with every member, no certificate expiring within a day, the new
kubeadm, kubelet and kubectl staged on every node (and the images of --images
imported) and answering the target version, 'kubeadm upgrade plan' accepted;
then a verified etcd snapshot into --work-dir.

The new binaries come from --binaries DIR (air-gapped), or else from the
Kubernetes apt repository each node already uses
(/etc/apt/sources.list.d/kubernetes.list, as prepare-node writes it): that
repository is per minor (https://pkgs.k8s.io/core:/stable:/v1.34/deb/), so the
target's is the node's with its minor switched, on another base with
--package-repository. Staging fetches the target's packages and the running
ones (the way back) with an apt configuration of its own; the node's turn
installs the new ones held and switches the node's repository to the new
minor.

Control planes one at a time (kubeadm upgrade apply on the first, upgrade node
on the others, the API server out of the load balancer meanwhile), then workers
--max-unavailable at a time (drained through the eviction API, so
PodDisruptionBudgets hold). Each node: drained, kubeadm, kubelet and kubectl
replaced, kubelet restarted, gated (static pods at the new version and healthy,
etcd healthy, Node Ready at the new version), uncordoned.

A node that fails is put back from the copy taken before its first change
(binaries or packages and repository, kubelet configuration), uncordoned and Ready, and the run stops with
exit 2 naming it. An interrupt (Ctrl-C, SIGTERM) finishes the node under way and
stops. Running again finishes the job; on an upgraded cluster it changes nothing.
--host limits the run to some nodes (workers only once every control plane is
upgraded).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !f.dryRun && !f.yes {
				return errors.New("upgrade changes every node of the cluster: pass --yes (or --dry-run for the plan)")
			}
			inv, err := g.LoadInventory()
			if err != nil {
				return err
			}
			var sel []inventory.Node
			if len(g.Hosts) > 0 || len(g.Roles) > 0 {
				if sel, err = g.Select(inv, inventory.RoleControlPlane, inventory.RoleWorker); err != nil {
					return err
				}
			}
			pool := g.Pool(inv)
			defer pool.Close()
			st := g.Status()
			defer st.Close()
			plan := g.Streams.Out // the dry run's plan; standard error when the output is a document
			if g.Output != cli.OutputTable {
				plan = g.Streams.Err
			}
			res, err := upgrade.Run(cmd.Context(), upgrade.Options{
				Inventory: inv, Nodes: sel, Connector: pool, Status: st, Plan: plan,
				To: f.to, Binaries: f.binaries, Images: f.images, PackageRepository: f.packageRepository, MaxUnavailable: f.maxUnavailable,
				DryRun: f.dryRun, WorkDir: f.workDir, Keep: f.keep, Timeout: f.timeout, DrainTimeout: f.drainTimeout,
			})
			if res != nil {
				if done, eerr := g.Encode(res); done || eerr != nil {
					return errors.Join(err, eerr)
				}
			}
			if err != nil {
				return err
			}
			if f.dryRun {
				return nil
			}
			if !res.Changed {
				fmt.Fprintf(g.Streams.Out, "every node runs %s: nothing changed\n", res.To)
				return nil
			}
			fmt.Fprintf(g.Streams.Out, "upgraded to %s in %.1fs (etcd snapshot before it: %s)\n", res.To, res.Seconds, res.Snapshot)
			for _, n := range res.Nodes {
				fmt.Fprintf(g.Streams.Out, "  %s (%s): %s -> %s (%s, %.0fs)\n", n.Node, n.Role, n.Before, n.After, n.Action, n.Seconds)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.to, "to", "", "the version to upgrade to (default: the inventory's kubernetesVersion)")
	fl.StringVar(&f.binaries, "binaries", "", "a local directory holding the target's kubeadm, kubelet and kubectl (Linux, the nodes' architecture)")
	fl.StringVar(&f.packageRepository, "package-repository", "", "without --binaries: the base of the per-minor Kubernetes apt repositories, BASE/vX.Y/deb/ (default: the base of each node's own, e.g. "+upgrade.DefaultPackageRepository+")")
	fl.StringVar(&f.images, "images", "", "a local directory of image tarballs to import on every node (air-gapped)")
	fl.IntVar(&f.maxUnavailable, "max-unavailable", 1, "workers upgraded at once")
	fl.BoolVar(&f.dryRun, "dry-run", false, "check everything and print the plan per node; change nothing")
	fl.BoolVar(&f.yes, "yes", false, "go on without asking")
	fl.StringVar(&f.workDir, "work-dir", "", "where the etcd snapshot taken before the first change goes (default ./CLUSTER.upgrade)")
	fl.IntVar(&f.keep, "keep", 3, "kubeadm's backups of each kind kept in /etc/kubernetes/tmp on each node")
	fl.DurationVar(&f.timeout, "timeout", 5*time.Minute, "bound on each wait (components healthy, Node Ready)")
	fl.DurationVar(&f.drainTimeout, "drain-timeout", 5*time.Minute, "bound on one node's drain (it fails naming the pods that block it)")
	cmd.MarkFlagsMutuallyExclusive("binaries", "package-repository")
	return cmd
}
