// Package cluster holds the cluster lifecycle commands: init, join,
// join-command and reset.
package cluster

import (
	"github.com/spf13/cobra"

	"github.com/kbootstrap/kbootstrap/cmd/kbootstrap/internal/cli"
)

// NewCommands returns init, join, join-command and reset.
func NewCommands(g *cli.Globals) []*cobra.Command {
	pending := func(use, short string) *cobra.Command {
		name := use
		for i, c := range use {
			if c == ' ' {
				name = use[:i]
				break
			}
		}
		return &cobra.Command{
			Use:   use,
			Short: short + " (not implemented yet)",
			RunE:  func(*cobra.Command, []string) error { return cli.NotImplemented(name) },
		}
	}
	return []*cobra.Command{
		pending("init [--dry-run]", "kubeadm init on the first control plane, upload-certs, join the rest"),
		pending("join [--dry-run]", "join nodes of the inventory that are not yet in the cluster"),
		pending("join-command [--control-plane]", "print a fresh join command"),
		pending("reset", "kubeadm reset on the selected nodes"),
	}
}
