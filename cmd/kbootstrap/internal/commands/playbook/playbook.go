// Package playbook is `kbootstrap playbook`: ansible-free playbooks.
package playbook

import (
	"github.com/spf13/cobra"

	"github.com/kbootstrap/kbootstrap/cmd/kbootstrap/internal/cli"
)

// NewCommand returns `playbook` with run and list.
func NewCommand(g *cli.Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "playbook", Short: "Run ansible-free playbooks"}
	cmd.AddCommand(
		&cobra.Command{Use: "run FILE|NAME [--check]", Short: "run a playbook (not implemented yet)",
			RunE: func(*cobra.Command, []string) error { return cli.NotImplemented("playbook run") }},
		&cobra.Command{Use: "list", Short: "list the shipped playbooks (not implemented yet)",
			RunE: func(*cobra.Command, []string) error { return cli.NotImplemented("playbook list") }},
	)
	return cmd
}
