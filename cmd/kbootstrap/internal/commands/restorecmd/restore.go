// Package restorecmd is `kbootstrap restore`, a thin adaptor over package
// restore.
package restorecmd

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/kbootstrap/kbootstrap/backup"
	"github.com/kbootstrap/kbootstrap/cmd/kbootstrap/internal/cli"
	"github.com/kbootstrap/kbootstrap/nodetimer"
	"github.com/kbootstrap/kbootstrap/restore"
)

type flags struct {
	passphraseFile, identityFile string
	fromMember, binary, workDir  string
	dryRun, yes                  bool
	timeout                      time.Duration
}

// NewCommand returns `restore`.
func NewCommand(g *cli.Globals) *cobra.Command {
	var f flags
	cmd := &cobra.Command{
		Use:   "restore (FILE | --from-member NODE) [--dry-run] [--yes]",
		Short: "Bring the cluster's control plane back from a backup bundle, or from one surviving etcd member",
		Long: `Restore the cluster of the inventory, as the Kubernetes docs describe for
stacked etcd: every kube-apiserver stopped, then every etcd; on every control
plane the same snapshot restored with that member's name and peer URL, the full
initial cluster, a new cluster token, the revision bumped by 1e9 and marked
compacted (watchers and informers list again instead of missing changes); etcd
started and healthy, then the API servers; the controller-manager, scheduler
and every kubelet restarted; /readyz through the control-plane endpoint and
every Node Ready.

FILE is a bundle of 'kbootstrap backup' (verified whole first; its CA must be
the nodes' CA). --from-member NODE restores instead that control plane's own etcd
data on every member: for a cluster that lost quorum with no bundle.

Before any change: the bundle verifies, every control plane answers, the CAs
match, the snapshot's etcd is not newer than the nodes'. Each member's data
directory is moved aside, never deleted. A run that fails or is interrupted
after that says how to go back; running it again completes it.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var file string
			if len(args) == 1 {
				file = args[0]
			}
			if (file == "") == (f.fromMember == "") {
				return errors.New("give a bundle FILE or --from-member NODE, one of them")
			}
			if !f.dryRun && !f.yes {
				return errors.New("restore replaces the etcd data of every control plane: pass --yes (or --dry-run for the plan)")
			}
			s, err := backup.LoadSecrets(f.passphraseFile, f.identityFile, "")
			if err != nil {
				return err
			}
			bin, err := nodetimer.LoadBinary(f.binary)
			if err != nil {
				return err
			}
			inv, err := g.LoadInventory()
			if err != nil {
				return err
			}
			pool := g.Pool(inv)
			defer pool.Close()
			st := g.Status()
			defer st.Close()
			workDir := f.workDir
			if workDir == "" {
				workDir = "./" + inv.Name + ".restore"
			}
			res, err := restore.Run(cmd.Context(), restore.Options{
				Inventory: inv, Connector: pool, Status: st, Plan: g.Streams.Out,
				Bundle: file, Secrets: s, FromMember: f.fromMember, DryRun: f.dryRun,
				Binary: bin, WorkDir: workDir, Timeout: f.timeout,
			})
			if err != nil {
				return err
			}
			if done, err := g.Encode(res); done || err != nil || f.dryRun {
				return err
			}
			fmt.Fprintf(g.Streams.Out, "restored %s onto %d control planes in %.1fs (etcd revision %d, bumped by %d); /readyz through %s, every Node Ready\n",
				res.Source, len(res.Members), res.Seconds, res.Revision, 1_000_000_000, res.Endpoint)
			for _, m := range res.Members {
				fmt.Fprintf(g.Streams.Out, "  %s: member %s, the data before the restore kept in %s\n", m.Node, m.Name, m.Aside)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.passphraseFile, "passphrase-file", "", "file holding the bundle's passphrase (mode 0600)")
	fl.StringVar(&f.identityFile, "identity", "", "age identity file that opens the bundle")
	fl.StringVar(&f.fromMember, "from-member", "", "restore this control plane's own etcd data on every member (no bundle)")
	fl.BoolVar(&f.dryRun, "dry-run", false, "check everything and print the plan per node; change nothing")
	fl.BoolVar(&f.yes, "yes", false, "go on without asking (restore replaces every member's data)")
	fl.StringVar(&f.binary, "binary", "", "the Linux kbootstrap executable run on the nodes (default: this one)")
	fl.StringVar(&f.workDir, "work-dir", "", "where the snapshot waits on this machine (default ./CLUSTER.restore; kept when the restore does not complete)")
	fl.DurationVar(&f.timeout, "timeout", 5*time.Minute, "bound on each wait (etcd healthy, API servers ready, Nodes Ready)")
	return cmd
}
