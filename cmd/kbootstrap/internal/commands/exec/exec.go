// Package exec is `kbootstrap exec`: one command on the selected nodes.
package exec

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/kbootstrap/kbootstrap/cmd/kbootstrap/internal/cli"
	"github.com/kbootstrap/kbootstrap/node"
)

type flags struct {
	sudo bool
}

// NewCommand returns `exec [--sudo] -- CMD...`.
func NewCommand(g *cli.Globals) *cobra.Command {
	var f flags
	cmd := &cobra.Command{
		Use:   "exec [--sudo] -- CMD...",
		Short: "Run a command on the selected nodes",
		Long: `Run a shell command on every selected node at once (bounded by --concurrency).
Table output streams each line as "NAME: line"; json and yaml print one record
per node: {"node", "exitCode", "stdout", "stderr", "error"}. Exit code 2 when
any node failed or could not be reached; the other nodes' results are kept.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, nodes, pool, err := g.Open()
			if err != nil {
				return err
			}
			defer pool.Close()
			opts := node.RunAllOptions{Concurrency: g.Concurrency, Sudo: f.sudo, Redactor: g.Redactor}
			if g.Output == cli.OutputTable {
				out, errw := node.NewSyncWriter(g.Streams.Out), node.NewSyncWriter(g.Streams.Err)
				opts.Stdout, opts.Stderr = out, errw
			}
			results, runErr := node.RunAll(cmd.Context(), pool, nodes, strings.Join(args, " "), opts)
			return cli.Report(g, results, runErr)
		},
	}
	cmd.Flags().BoolVar(&f.sudo, "sudo", false, "run through sudo -n (for a non-root SSH user)")
	return cmd
}
