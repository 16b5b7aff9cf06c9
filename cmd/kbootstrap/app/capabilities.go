package app

import (
	"github.com/spf13/cobra"

	"github.com/kbootstrap/kbootstrap/cmd/kbootstrap/internal/cli"
	"github.com/kbootstrap/kbootstrap/cmd/kbootstrap/internal/commands/certs"
)

// addCapabilities registers the certs and etcd command trees.
func addCapabilities(root *cobra.Command, g *cli.Globals) {
	root.AddCommand(certs.NewCommand(g))
	for _, name := range []string{"etcd"} {
		root.AddCommand(&cobra.Command{
			Use:   name,
			Short: "not implemented yet",
			RunE:  func(*cobra.Command, []string) error { return cli.NotImplemented(name) },
		})
	}
}
