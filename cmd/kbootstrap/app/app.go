package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kbootstrap/kbootstrap/cmd/kbootstrap/internal/cli"
	"github.com/kbootstrap/kbootstrap/cmd/kbootstrap/internal/commands/backupcmd"
	"github.com/kbootstrap/kbootstrap/cmd/kbootstrap/internal/commands/cluster"
	execcmd "github.com/kbootstrap/kbootstrap/cmd/kbootstrap/internal/commands/exec"
	"github.com/kbootstrap/kbootstrap/cmd/kbootstrap/internal/commands/inventorycmd"
	"github.com/kbootstrap/kbootstrap/cmd/kbootstrap/internal/commands/playbook"
	"github.com/kbootstrap/kbootstrap/cmd/kbootstrap/internal/commands/restorecmd"
	"github.com/kbootstrap/kbootstrap/cmd/kbootstrap/internal/commands/upgradecmd"
	"github.com/kbootstrap/kbootstrap/cmd/kbootstrap/internal/commands/verifycmd"
	versioncmd "github.com/kbootstrap/kbootstrap/cmd/kbootstrap/internal/commands/version"
	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/node"
)

// Stamped at build time with -ldflags -X.
var (
	version = "dev"
	commit  = "unknown"
)

// Main runs kbootstrap with the process's arguments and streams and returns
// the exit code; only main calls os.Exit.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	red := &node.Redactor{}
	err := run(ctx, cli.Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}, os.Args[1:], red)
	// The final error goes through the run's redactor like every log line.
	stderr := red.Writer(os.Stderr)
	defer stderr.Flush()
	return ExitCode(err, stderr)
}

// ExitCode maps Run's error to the contract's exit code, printing the error
// unless the command already reported it.
func ExitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ee *cli.ExitError
	if errors.As(err, &ee) {
		if ee.Err != nil {
			fmt.Fprintln(stderr, "Error:", ee.Err)
		}
		return ee.Code
	}
	fmt.Fprintln(stderr, "Error:", err)
	return 2
}

// Run builds the command tree and executes args.
func Run(ctx context.Context, streams cli.Streams, args []string) error {
	return run(ctx, streams, args, &node.Redactor{})
}

func run(ctx context.Context, streams cli.Streams, args []string, red *node.Redactor) error {
	g := &cli.Globals{Streams: streams, Redactor: red}
	root := NewRootCommand(g)
	root.SetArgs(args)
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.Err)
	return root.ExecuteContext(ctx)
}

// NewRootCommand returns the kbootstrap command tree over g.
func NewRootCommand(g *cli.Globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "kbootstrap",
		Short: "Bootstrap and look after kubeadm clusters over SSH",
		Long: `kbootstrap bootstraps and looks after Kubernetes clusters built with kubeadm,
entirely over SSH: init and joins, PKI audits and renewals, etcd access as the
API server has it, and ansible-free playbooks.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelWarn
			if g.Verbose > 0 {
				level = slog.LevelDebug
			}
			// Every log line goes through the redactor before the terminal.
			g.Logger = slog.New(slog.NewTextHandler(g.Redactor.Writer(g.Streams.Err), &slog.HandlerOptions{Level: level}))
			return g.Validate()
		},
	}
	f := root.PersistentFlags()
	f.StringVarP(&g.Inventory, "inventory", "i", inventory.DefaultFile, "inventory file")
	f.StringVarP(&g.Output, "output", "o", cli.OutputTable, "output format: table, json or yaml")
	f.IntVar(&g.Concurrency, "concurrency", 20, "nodes worked on at once")
	f.StringSliceVar(&g.Hosts, "host", nil, "limit to these nodes (repeatable)")
	f.StringSliceVar(&g.Roles, "role", nil, "limit to nodes of this role (repeatable)")
	f.CountVarP(&g.Verbose, "verbose", "v", "log what is done (commands, connections)")
	f.BoolVar(&g.AcceptNewHostKeys, "accept-new-host-keys", false, "trust unknown host keys on first use and append them to known_hosts (a changed key is always refused)")
	f.DurationVar(&g.ConnectTimeout, "connect-timeout", 10*time.Second, "bound on connecting to one node, retries included")

	root.AddCommand(
		versioncmd.NewCommand(g, version, commit),
		execcmd.NewCommand(g),
	)
	root.AddCommand(cluster.NewCommands(g)...)
	root.AddCommand(
		playbook.NewCommand(g),
		inventorycmd.NewCommand(g),
		verifycmd.NewCommand(g),
		backupcmd.NewCommand(g),
		restorecmd.NewCommand(g),
		upgradecmd.NewCommand(g),
	)
	addCapabilities(root, g)
	return root
}
