// Package cluster holds the cluster lifecycle commands: init, join,
// join-command and reset.
package cluster

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kbootstrap/kbootstrap/bootstrap"
	"github.com/kbootstrap/kbootstrap/cmd/kbootstrap/internal/cli"
	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/report"
	"github.com/kbootstrap/kbootstrap/verify"
)

// NewCommands returns init, join, join-command and reset.
func NewCommands(g *cli.Globals) []*cobra.Command {
	return []*cobra.Command{newInit(g, false), newInit(g, true), newJoinCommand(g), newReset(g), newRemove(g)}
}

// verifyPhase is init's last phase: the fast checks of verify.
const verifyPhase = "verify"

type applyFlags struct {
	dryRun     bool
	kubeconfig string
	skip       []string
}

func newInit(g *cli.Globals, join bool) *cobra.Command {
	var f applyFlags
	cmd := &cobra.Command{
		Use:   "init [--dry-run]",
		Short: "kubeadm init on the first control plane, upload-certs, join the rest",
		Long: `Form the cluster of the inventory, or converge it: facts and preflight on every
node first; haproxy on the loadbalancer nodes; kubeadm init on the first control
plane; the other control planes joined one at a time (each waits for its etcd
member and its Node Ready); the workers in parallel; the pod network (host-gw:
a bridge CNI config per node and routes between the nodes' pod CIDRs, or the
inventory's network.manifest); admin.conf to --kubeconfig-out; last, the fast
checks of kbootstrap verify (nodes, pod network, Services, DNS) and their
one-line summary. On a formed cluster it changes nothing and says so. Phases:
` + strings.Join(bootstrap.PhaseNames, ", ") + `, ` + verifyPhase + `.`,
	}
	name := "init"
	if join {
		name = "join"
		cmd.Use = "join [--dry-run]"
		cmd.Short = "join nodes of the inventory that are not yet in the cluster"
		cmd.Long = "Join the nodes of the inventory (or of --host/--role) that are not in the cluster yet,\nas init does; the cluster must exist."
	}
	cmd.Args = cobra.NoArgs
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		inv, err := g.LoadInventory()
		if err != nil {
			return err
		}
		nodes, err := g.Select(inv)
		if err != nil {
			return err
		}
		if len(g.Hosts) == 0 && len(g.Roles) == 0 {
			nodes = nil
		}
		pool := g.Pool(inv)
		defer pool.Close()
		st := g.Status()
		defer st.Close()
		// verify is init's last phase, run here: a workflow never calls another.
		skipVerify := join || f.dryRun || slices.Contains(f.skip, verifyPhase)
		skip := slices.DeleteFunc(slices.Clone(f.skip), func(s string) bool { return s == verifyPhase })
		opts := bootstrap.Options{Inventory: inv, Connector: pool, Nodes: nodes, Concurrency: g.Concurrency, DryRun: f.dryRun,
			SkipPhases: skip, KubeconfigOut: f.kubeconfig, Status: st, Stream: g.Verbose > 0, Redactor: g.Redactor,
			Logger: g.Logger, Out: g.Streams.Out}
		run := bootstrap.Init
		if join {
			run = bootstrap.Join
		}
		if _, err := run(cmd.Context(), opts); err != nil {
			return fmt.Errorf("kbootstrap %s: %w", name, err)
		}
		if skipVerify {
			return nil
		}
		res, err := verify.Run(cmd.Context(), verify.Options{Inventory: inv, Connector: pool, Status: st, Log: g.Logger,
			Concurrency: g.Concurrency, Groups: verify.FastGroups, Settle: 2 * time.Minute})
		if err != nil {
			return fmt.Errorf("kbootstrap %s: verify: %w", name, err)
		}
		fails := 0
		for _, fd := range res.Findings.Findings {
			if fd.Severity == report.Fail {
				fails++
			}
		}
		st.Printf("Verify (%s): %d checks, %d failed, in %.1fs", strings.Join(verify.FastGroups, ", "), len(res.Findings.Findings), fails, res.Seconds)
		if fails > 0 {
			st.Close()
			only := report.Findings{}
			for _, fd := range res.Findings.Findings {
				if fd.Severity != report.OK {
					only.Add(fd)
				}
			}
			if err := only.WriteTable(g.Streams.Out, true); err != nil {
				return err
			}
			return fmt.Errorf("kbootstrap %s: the cluster is formed but %d checks of verify failed (kbootstrap verify --all shows them all)", name, fails)
		}
		return nil
	}
	cmd.Flags().BoolVar(&f.dryRun, "dry-run", false, "print the plan per node and change nothing")
	cmd.Flags().StringVar(&f.kubeconfig, "kubeconfig-out", "", "where to write the admin kubeconfig (default ./<name>.kubeconfig, mode 0600)")
	phases := bootstrap.PhaseNames
	if !join {
		phases = append(slices.Clone(phases), verifyPhase)
	}
	cmd.Flags().StringSliceVar(&f.skip, "skip-phases", nil, "phases not to run: "+strings.Join(phases, ", "))
	return cmd
}

func newJoinCommand(g *cli.Globals) *cobra.Command {
	var controlPlane bool
	cmd := &cobra.Command{
		Use:   "join-command [--control-plane]",
		Short: "print a fresh join command",
		Long: `Print a kubeadm join command line with a new bootstrap token (valid 24h); with
--control-plane the certificates are uploaded again under a new certificate key,
added as --certificate-key (kubeadm deletes them after 2h). The line holds
secrets: it is printed only to standard output, never logged.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			inv, err := g.LoadInventory()
			if err != nil {
				return err
			}
			pool := g.Pool(inv)
			defer pool.Close()
			jc, err := bootstrap.NewJoinCommand(cmd.Context(), bootstrap.JoinCommandOptions{Inventory: inv, Connector: pool, ControlPlane: controlPlane, Redactor: g.Redactor})
			if err != nil {
				return fmt.Errorf("kbootstrap join-command: %w", err)
			}
			fmt.Fprintln(g.Streams.Out, jc.Command)
			msg := fmt.Sprintf("The token is valid for %s.", jc.TokenTTL)
			if controlPlane {
				msg += fmt.Sprintf(" The uploaded certificates are deleted after %s: join control planes before then, or run join-command --control-plane again.", jc.CertificatesTTL)
			}
			fmt.Fprintln(g.Streams.Err, msg)
			return nil
		},
	}
	cmd.Flags().BoolVar(&controlPlane, "control-plane", false, "a command for a control plane (uploads the certificates, adds --certificate-key)")
	return cmd
}

func newReset(g *cli.Globals) *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "reset",
		Short: "kubeadm reset on the selected nodes",
		Long: `kubeadm reset on the selected nodes (--host, --role), one at a time, asking first
unless --yes. A control plane leaves etcd first (its member removed through
another control plane); each Node object is drained and deleted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			inv, nodes, pool, err := g.Open(inventory.RoleControlPlane, inventory.RoleWorker)
			if err != nil {
				return err
			}
			defer pool.Close()
			st := g.Status()
			defer st.Close()
			err = bootstrap.Reset(cmd.Context(), bootstrap.ResetOptions{Inventory: inv, Connector: pool, Nodes: nodes, Yes: yes,
				In: g.Streams.In, Prompt: g.Streams.Err, Status: st, Stream: g.Verbose > 0, Redactor: g.Redactor})
			if err != nil {
				return fmt.Errorf("kbootstrap reset: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask")
	return cmd
}

func newRemove(g *cli.Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "remove NODE",
		Short: "Take a node lost for good out of the cluster: its etcd member and its Node",
		Long: `Remove NODE (of the inventory) from the cluster through another control plane,
without touching NODE itself, which may be gone: its etcd member (a control
plane; by name or peer address) and its Node object. A new machine under the
same name then joins with 'kbootstrap join' (its new host key refused until you
accept it). For a node that still answers, 'kbootstrap reset --host NODE' also
wipes it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			inv, err := g.LoadInventory()
			if err != nil {
				return err
			}
			in, ok := inv.Node(args[0])
			if !ok {
				return fmt.Errorf("remove: %s: no such node in %s", args[0], g.Inventory)
			}
			pool := g.Pool(inv)
			defer pool.Close()
			st := g.Status()
			defer st.Close()
			res, err := bootstrap.Remove(cmd.Context(), bootstrap.RemoveOptions{Inventory: inv, Connector: pool, Node: in, Status: st, Redactor: g.Redactor})
			if err != nil {
				return fmt.Errorf("kbootstrap remove: %w", err)
			}
			if done, err := g.Encode(res); done || err != nil {
				return err
			}
			members := "no etcd member"
			if len(res.EtcdMembers) > 0 {
				members = "etcd member " + strings.Join(res.EtcdMembers, ", ")
			}
			node := "no Node object (already gone)"
			if res.NodeDeleted {
				node = "its Node object"
			}
			fmt.Fprintf(g.Streams.Out, "removed %s from the cluster through %s: %s, %s\n", res.Node, res.Via, members, node)
			return nil
		},
	}
	return cmd
}
