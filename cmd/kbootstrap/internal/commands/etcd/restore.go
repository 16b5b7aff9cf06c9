package etcdcmd

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kbootstrap/kbootstrap/cmd/kbootstrap/internal/cli"
	"github.com/kbootstrap/kbootstrap/etcd"
	"github.com/kbootstrap/kbootstrap/kubeadm"
)

type restoreMemberFlags struct {
	name, initialCluster, token, dataDir string
	peerURLs                             []string
	fromDataDir                          bool
	bump                                 uint64
}

// newRestoreMember is what `restore` runs on each control plane (kbootstrap
// uploaded there): etcdutl's restore, in this process, of one member. Hidden:
// a user restores a cluster with `kbootstrap restore`.
func newRestoreMember(g *cli.Globals) *cobra.Command {
	var f restoreMemberFlags
	cmd := &cobra.Command{
		Use:    "restore-member SNAPSHOT --name N --peer-url URL --initial-cluster C --token T",
		Short:  "Restore this member's data directory from SNAPSHOT (run on the node by kbootstrap restore)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := etcd.RestoreMember(etcd.RestoreMemberOptions{
				Snapshot: args[0], Name: f.name, PeerURLs: f.peerURLs, InitialCluster: f.initialCluster,
				ClusterToken: f.token, DataDir: f.dataDir, FromDataDir: f.fromDataDir, RevisionBump: f.bump,
			})
			if err != nil {
				return err
			}
			if done, err := g.Encode(res); done || err != nil {
				return err
			}
			fmt.Fprintf(g.Streams.Out, "restored %s (the old data: %s)\n", res.DataDir, res.Aside)
			return nil
		},
	}
	cmd.Flags().StringVar(&f.name, "name", "", "this member's name")
	cmd.Flags().StringSliceVar(&f.peerURLs, "peer-url", nil, "this member's peer URL")
	cmd.Flags().StringVar(&f.initialCluster, "initial-cluster", "", "every member's name=peerURL")
	cmd.Flags().StringVar(&f.token, "token", "", "the restored cluster's new token")
	cmd.Flags().StringVar(&f.dataDir, "data-dir", kubeadm.EtcdDataDir, "the member's data directory")
	cmd.Flags().BoolVar(&f.fromDataDir, "from-data-dir", false, "SNAPSHOT is a member's db file (no sha256 trailer)")
	cmd.Flags().Uint64Var(&f.bump, "bump-revision", etcd.DefaultRevisionBump, "how far the revision moves on (the compaction mark is always set)")
	for _, n := range []string{"name", "peer-url", "initial-cluster", "token"} {
		cmd.MarkFlagRequired(n)
	}
	return cmd
}
