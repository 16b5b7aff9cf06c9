// Package verifycmd is `kbootstrap verify`, a thin adaptor over package verify.
package verifycmd

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kbootstrap/kbootstrap/cmd/kbootstrap/internal/cli"
	"github.com/kbootstrap/kbootstrap/report"
	"github.com/kbootstrap/kbootstrap/verify"
)

type flags struct {
	keep    bool
	timeout time.Duration
	image   string
	checks  []string
	all     bool
}

// NewCommand returns `verify`.
func NewCommand(g *cli.Globals) *cobra.Command {
	var f flags
	cmd := &cobra.Command{
		Use:   "verify [--keep] [--timeout D]",
		Short: "Prove the cluster works: nodes, pod network, Services, NodePorts, DNS, NetworkPolicy",
		Long: `Run an agnhost pod on every Ready, schedulable node, in a namespace of its own
(` + verify.NamespacePrefix + `<random>, removed afterwards unless --keep), and check:
  nodes          every node Ready, every kube-system pod running and ready, CoreDNS up;
  pod-network    a pod on each node reaches a pod on every other node and is seen
                 with its own IP (no NAT); each node reaches them (over SSH);
  service        a ClusterIP Service answers from every pod and every node; its
                 EndpointSlices follow readiness; headless and ExternalName resolve;
  nodeport       the NodePort answers on every node's internal address (from this
                 workstation when it routes there, else from another node);
  dns            the Service's full, namespace and short names, kubernetes.default
                 and a pod's A record, from a pod on every node;
  networkpolicy  default-deny-ingress blocks, an allow rule by label admits exactly
                 its client, default-deny-egress blocks DNS until a rule lets it out.
Image: ` + verify.AgnhostImage + ` (imported by prepare-node --images offline).
Exit code 0 when everything is ok, 1 with warnings, 2 with a failure.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			inv, err := g.LoadInventory()
			if err != nil {
				return err
			}
			pool := g.Pool(inv)
			defer pool.Close()
			st := g.Status()
			defer st.Close()
			res, err := verify.Run(cmd.Context(), verify.Options{
				Inventory: inv, Connector: pool, Status: st, Log: g.Logger, Concurrency: g.Concurrency,
				Timeout: f.timeout, Keep: f.keep, Image: f.image, Groups: f.checks,
			})
			if err != nil {
				return err
			}
			st.Close()
			res.Sort()
			if res.Findings.Findings == nil {
				res.Findings.Findings = []report.Finding{}
			}
			var done bool
			if done, err = g.Encode(res); !done {
				if err = res.WriteTable(g.Streams.Out, f.all || g.Verbose > 0); err == nil {
					fmt.Fprintf(g.Streams.Out, "verify: %s in %.1fs (namespace %s%s)\n", strings.ToLower(string(res.Worst())), res.Seconds, res.Namespace, map[bool]string{true: ", kept", false: ", removed"}[res.Kept])
				}
			}
			if err != nil {
				return err
			}
			return cli.Exit(res.ExitCode())
		},
	}
	cmd.Flags().BoolVar(&f.keep, "keep", false, "leave the namespace and its workload in place (to look at it)")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 3*time.Minute, "bound on the checks (the clean-up has its own minute)")
	cmd.Flags().StringVar(&f.image, "image", verify.AgnhostImage, "the workload's image (agnhost)")
	cmd.Flags().StringSliceVar(&f.checks, "checks", nil, "only these groups: "+strings.Join(verify.AllGroups, ", ")+" (default all)")
	cmd.Flags().BoolVar(&f.all, "all", false, "list passed checks too (table output)")
	return cmd
}
