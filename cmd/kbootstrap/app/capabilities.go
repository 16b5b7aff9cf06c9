package app

import (
	"github.com/spf13/cobra"

	"github.com/kbootstrap/kbootstrap/cmd/kbootstrap/internal/cli"
	"github.com/kbootstrap/kbootstrap/cmd/kbootstrap/internal/commands/certs"
	etcdcmd "github.com/kbootstrap/kbootstrap/cmd/kbootstrap/internal/commands/etcd"
)

// addCapabilities registers the certs and etcd command trees.
func addCapabilities(root *cobra.Command, g *cli.Globals) {
	root.AddCommand(certs.NewCommand(g), etcdcmd.NewCommand(g))
}
