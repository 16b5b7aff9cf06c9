// Package backupcmd is `kbootstrap backup`, a thin adaptor over package
// backup.
package backupcmd

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kbootstrap/kbootstrap/backup"
	"github.com/kbootstrap/kbootstrap/cmd/kbootstrap/internal/cli"
	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/node"
	"github.com/kbootstrap/kbootstrap/nodetimer"
)

// secretFlags are how a command finds a bundle's secrets: files only.
type secretFlags struct {
	passphraseFile, identityFile string
}

func (f *secretFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.passphraseFile, "passphrase-file", "", "file holding the bundle's passphrase (mode 0600)")
	cmd.Flags().StringVar(&f.identityFile, "identity", "", "age identity file that opens the bundle")
}

type takeFlags struct {
	secretFlags
	recipient, cluster, nodeName string
	keep                         int
	local                        bool
	timeout                      time.Duration
}

// NewCommand returns `backup`.
func NewCommand(g *cli.Globals) *cobra.Command {
	var f takeFlags
	cmd := &cobra.Command{
		Use:   "backup FILE",
		Short: "Write a bundle of the control plane: etcd snapshot, PKI, kubeadm configuration",
		Long: `Write FILE (mode 0600) through the first control plane that answers: a verified
etcd snapshot taken as the API server reaches etcd, the cluster's CAs with their
keys and the service-account key pair (` + strings.Join(backup.RequiredPKI, ", ") + `),
kubeadm's ClusterConfiguration, the Kubernetes and etcd versions and etcd's
members, with a manifest of sha256 sums. The bundle is verified as it is written.
With --passphrase-file or --recipient it is age-encrypted and holds no private
key in the clear. --keep N keeps FILE.1 ... FILE.(N-1) too.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := backup.LoadSecrets(f.passphraseFile, "", f.recipient)
			if err != nil {
				return err
			}
			st := g.Status()
			defer st.Close()
			o := backup.Options{Status: st, File: args[0], Secrets: s, Keep: f.keep, Timeout: f.timeout, Cluster: f.cluster}
			if f.local {
				name := f.nodeName
				if name == "" {
					name, _ = os.Hostname()
				}
				o.Local = node.NewLocal(name, g.Logger)
				if o.Cluster == "" {
					return errors.New("--local needs --cluster NAME (the inventory's name, for the bundle)")
				}
			} else {
				inv, nodes, pool, err := g.Open(inventory.RoleControlPlane)
				if err != nil {
					return err
				}
				defer pool.Close()
				o.Connector, o.ControlPlanes = pool, nodes
				if o.Cluster == "" {
					o.Cluster = inv.Name
				}
			}
			res, err := backup.Take(cmd.Context(), o)
			if err != nil {
				return err
			}
			for _, e := range res.Failed {
				st.Printf("• %v", e)
			}
			if done, err := g.Encode(res); done || err != nil {
				return err
			}
			fmt.Fprintf(g.Streams.Out, "%s: %d bytes through %s in %.1fs (etcd revision %d, Kubernetes %s)\n",
				res.File, res.Size, res.Node, res.Seconds, res.Manifest.SnapshotRevision, res.Manifest.KubernetesVersion)
			return nil
		},
	}
	cmd.Flags().StringVar(&f.passphraseFile, "passphrase-file", "", "encrypt with the passphrase in this file (mode 0600)")
	cmd.Flags().StringVar(&f.recipient, "recipient", "", "encrypt to this age public key (age1...)")
	cmd.Flags().IntVar(&f.keep, "keep", 0, "keep this many bundles: FILE and FILE.1 ... FILE.(N-1) (0: replace FILE)")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 30*time.Second, "bound on each etcd call")
	cmd.Flags().BoolVar(&f.local, "local", false, "run on the control plane itself (from a timer): local files, local etcd and API server, no SSH")
	cmd.Flags().StringVar(&f.cluster, "cluster", "", "the cluster's name in the bundle (default: the inventory's name)")
	cmd.Flags().StringVar(&f.nodeName, "node", "", "with --local, the name to report (default: the host name)")
	cmd.AddCommand(newVerify(g), newSchedule(g))
	return cmd
}

func newVerify(g *cli.Globals) *cobra.Command {
	var f secretFlags
	cmd := &cobra.Command{
		Use:   "verify FILE",
		Short: "Check a bundle: sums, the snapshot's trailer, certificates against their keys, versions",
		Long: `Read the whole bundle FILE (decrypting it with --passphrase-file or --identity
when it is encrypted) and check every entry against its manifest (size and
sha256), the etcd snapshot against its sha256 trailer, every certificate of the
PKI against its key and sa.pub against sa.key, the ClusterConfiguration and the
versions. Exit 0 when it is whole, 2 with every reason otherwise.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := backup.LoadSecrets(f.passphraseFile, f.identityFile, "")
			if err != nil {
				return err
			}
			m, err := backup.VerifyFile(args[0], s)
			if err != nil {
				return err
			}
			if done, err := g.Encode(m); done || err != nil {
				return err
			}
			var size int64
			for _, fl := range m.Files {
				size += fl.Size
			}
			fmt.Fprintf(g.Streams.Out, "ok %s\n  cluster    %s, taken %s\n  versions   Kubernetes %s, etcd %s\n  snapshot   revision %d, %d etcd members\n  files      %d, %d bytes, every sha256 matches\n",
				args[0], m.Cluster, m.Created.Format("2006-01-02 15:04:05 MST"), m.KubernetesVersion, m.EtcdVersion, m.SnapshotRevision, len(m.Members), len(m.Files), size)
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

func newSchedule(g *cli.Globals) *cobra.Command {
	var (
		f         cli.KeptFlags
		recipient string
	)
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Write a backup bundle on every control plane from a timer",
		Long: `Install on each control plane this kbootstrap as ` + nodetimer.NodeBinary + ` and a systemd timer
(` + backup.Unit + `.timer; a cron entry in ` + nodetimer.CronDir + ` where the node has no systemd)
that runs

  kbootstrap backup --local --cluster NAME --keep N [--recipient KEY] DIR/NAME.bundle

on the node itself, keeping N verified bundles in DIR (mode 0700). With
--recipient every bundle is encrypted to that age public key: its identity
stays off the nodes. The same mechanism as certs schedule and etcd snapshot
schedule: the binary checked against the node's architecture, files written
only when they differ, --remove uninstalls (the bundles stay).`,
		Example: `  kbootstrap -i kbootstrap.yaml backup schedule --recipient age1...
  kbootstrap -i kbootstrap.yaml backup schedule --keep 14 --on-calendar "*-*-* 00/6:00:00" --cron "0 */6 * * *"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			inv, nodes, pool, err := g.Open(inventory.RoleControlPlane)
			if err != nil {
				return err
			}
			defer pool.Close()
			st := g.Status()
			defer st.Close()
			err = backup.Schedule(cmd.Context(), backup.ScheduleOptions{
				Cluster: inv.Name, Nodes: nodes, Connector: pool, Concurrency: g.Concurrency,
				Kept: f.Kept(), Recipient: recipient, Binary: f.Binary, Remove: f.Remove, Status: st,
			})
			if err != nil {
				return fmt.Errorf("kbootstrap backup schedule: %w", err)
			}
			return nil
		},
	}
	f.Register(cmd.Flags(), backup.ScheduleDefaults, "bundles")
	cmd.Flags().StringVar(&recipient, "recipient", "", "encrypt every bundle to this age public key (age1...)")
	return cmd
}
