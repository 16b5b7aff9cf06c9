// Package backupcmd is `kbootstrap backup`, a thin adaptor over package
// backup.
package backupcmd

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kbootstrap/kbootstrap/backup"
	"github.com/kbootstrap/kbootstrap/cmd/kbootstrap/internal/cli"
)

// secretFlags are how a command finds a bundle's secrets: files only.
type secretFlags struct {
	passphraseFile, identityFile string
}

func (f *secretFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.passphraseFile, "passphrase-file", "", "file holding the bundle's passphrase (mode 0600)")
	cmd.Flags().StringVar(&f.identityFile, "identity", "", "age identity file that opens the bundle")
}

// NewCommand returns `backup`.
func NewCommand(g *cli.Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Backup bundles of the control plane: etcd snapshot, PKI, kubeadm configuration",
	}
	cmd.AddCommand(newVerify(g))
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
