package etcdcmd

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kbootstrap/kbootstrap/nodetimer"

	"github.com/spf13/cobra"

	"github.com/kbootstrap/kbootstrap/cmd/kbootstrap/internal/cli"
	"github.com/kbootstrap/kbootstrap/etcd"
	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/node"
)

// NewCommand returns `etcd` and its subcommands.
func NewCommand(g *cli.Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "etcd",
		Short: "etcd as the API server sees it: flags, members, snapshots, audit",
		Long: `Reach etcd exactly as the kube-apiserver does: its --etcd-servers and client
certificate, read from the running process (or its manifest) on each control
plane, with the connection tunnelled through SSH so nothing is installed on the
node and no port is opened. The certificates stay in memory.`,
	}
	cmd.AddCommand(newFlags(g), newMembers(g), newSnapshot(g), newAudit(g), newRestoreMember(g))
	return cmd
}

type timeoutFlag struct{ timeout time.Duration }

func (t *timeoutFlag) register(cmd *cobra.Command) {
	cmd.Flags().DurationVar(&t.timeout, "timeout", etcd.DefaultTimeout, "bound on each etcd call (a dead etcd fails within it)")
}

func newFlags(g *cli.Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "flags",
		Short: "The kube-apiserver's etcd client flags, per control plane",
		Long: `Print each control plane's kube-apiserver --etcd-servers, --etcd-cafile,
--etcd-certfile, --etcd-keyfile and --etcd-prefix, read from the running process
(source "process") or, when none runs, from /etc/kubernetes/manifests/kube-apiserver.yaml
(source "manifest"), with every difference between the two. Table output adds
the equivalent etcdctl command line to run on the node.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, nodes, pool, err := g.Open(inventory.RoleControlPlane)
			if err != nil {
				return err
			}
			defer pool.Close()
			res, runErr := etcd.CollectFlags(cmd.Context(), pool, nodes, g.Concurrency)
			if res == nil {
				res = []etcd.NodeFlags{}
			}
			if done, err := g.Encode(res); err != nil {
				return err
			} else if !done {
				writeFlagsTable(g, res)
			}
			return failed(g, runErr)
		},
	}
}

func writeFlagsTable(g *cli.Globals, res []etcd.NodeFlags) {
	tw := tabwriter.NewWriter(g.Streams.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSOURCE\tENDPOINTS\tCACERT\tCERT\tKEY\tPREFIX")
	for _, f := range res {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Node, f.Source, strings.Join(f.Endpoints, ","), f.CACert, f.Cert, f.Key, f.Prefix)
	}
	tw.Flush()
	for _, f := range res {
		for _, d := range f.Differences {
			fmt.Fprintf(g.Streams.Out, "%s: DIFFERS %s\n", f.Node, d)
		}
	}
	for _, f := range res {
		fmt.Fprintf(g.Streams.Out, "%s: %s\n", f.Node, f.EtcdctlCommand("member", "list"))
	}
}

// failed prints a failure and turns it into exit code 2 (results already
// printed are kept).
func failed(g *cli.Globals, err error) error {
	if err == nil {
		return nil
	}
	fmt.Fprintf(g.Streams.Err, "✗ %s\n", g.Redactor.String(err.Error()))
	return cli.Exit(2)
}

func newMembers(g *cli.Globals) *cobra.Command {
	var t timeoutFlag
	cmd := &cobra.Command{
		Use:   "members",
		Short: "etcd's member list, as the API server sees etcd",
		Long: `List etcd's members through the first selected control plane that answers,
with its kube-apiserver's credentials: id (hex), name, peer and client URLs and
whether the member is a learner. Table output adds each member's status
(leader, database size, raft index, version, alarms).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, nodes, pool, err := g.Open(inventory.RoleControlPlane)
			if err != nil {
				return err
			}
			defer pool.Close()
			table := g.Output == cli.OutputTable
			rep, err := etcd.ListMembers(cmd.Context(), pool, nodes, etcd.MembersOptions{Status: table, Timeout: t.timeout})
			if err != nil {
				return err
			}
			for _, e := range rep.Failed {
				fmt.Fprintf(g.Streams.Err, "! %s (asked %s instead)\n", g.Redactor.String(e.Error()), rep.Node)
			}
			if done, err := g.Encode(rep.Members); done || err != nil {
				return err
			}
			writeMembersTable(g, rep)
			return nil
		},
	}
	t.register(cmd)
	return cmd
}

func writeMembersTable(g *cli.Globals, rep etcd.MembersReport) {
	fmt.Fprintf(g.Streams.Out, "via %s\n", rep.Node)
	tw := tabwriter.NewWriter(g.Streams.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tPEER URLS\tCLIENT URLS\tLEARNER\tLEADER\tDB SIZE\tIN USE\tRAFT INDEX\tVERSION\tALARMS")
	for i, m := range rep.Members {
		st := etcd.EndpointStatus{}
		if i < len(rep.Statuses) {
			st = rep.Statuses[i]
		}
		leader, size, inUse, idx, ver, alarms := "", "", "", "", "", strings.Join(st.Alarms, ",")
		if st.Err != "" {
			leader, alarms = "?", "unreachable: "+st.Err
		} else if st.Endpoint != "" {
			leader = fmt.Sprint(st.Leader)
			size, inUse = humanBytes(st.DBSize), humanBytes(st.DBSizeInUse)
			idx, ver = fmt.Sprint(st.RaftIndex), st.Version
			if len(st.Errors) > 0 {
				alarms = strings.TrimPrefix(alarms+","+strings.Join(st.Errors, ","), ",")
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.Name, strings.Join(m.PeerURLs, ","), strings.Join(m.ClientURLs, ","), m.IsLearner, leader, size, inUse, idx, ver, alarms)
	}
	tw.Flush()
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func newSnapshot(g *cli.Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Save and verify etcd snapshots on this machine",
	}
	cmd.AddCommand(newSnapshotSave(g), newSnapshotVerify(g), newSnapshotSchedule(g))
	return cmd
}

type saveFlags struct {
	timeoutFlag
	keep     int
	local    bool
	nodeName string
	idle     time.Duration
}

func newSnapshotSave(g *cli.Globals) *cobra.Command {
	var f saveFlags
	cmd := &cobra.Command{
		Use:   "save FILE",
		Short: "Stream a verified etcd snapshot into FILE",
		Long: `Stream a snapshot of the etcd member the API server uses first (its first
--etcd-servers entry) through the SSH connection into FILE.part (mode 0600),
hashing it as it arrives; only when etcd's sha256 trailer matches is it
fsynced and renamed to FILE. On any error or interrupt nothing is left at FILE
and FILE.part is removed. --keep N keeps FILE.1 ... FILE.(N-1) as the older
snapshots. --local runs on the control plane itself (e.g. from a timer),
without inventory or SSH.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.keep < 0 {
				return fmt.Errorf("--keep %d: must be 0 or more", f.keep)
			}
			opts := etcd.SnapshotOptions{Keep: f.keep, IdleTimeout: f.idle}
			var res etcd.SnapshotResult
			var err error
			if f.local {
				name := f.nodeName
				if name == "" {
					name, _ = os.Hostname()
				}
				res, err = etcd.SnapshotFrom(cmd.Context(), node.NewLocal(name, g.Logger), args[0], opts, f.timeout)
			} else {
				_, nodes, pool, lerr := g.Open(inventory.RoleControlPlane)
				if lerr != nil {
					return lerr
				}
				defer pool.Close()
				res, err = etcd.SnapshotVia(cmd.Context(), pool, nodes, f.nodeName, args[0], opts, f.timeout)
			}
			if err != nil {
				return err
			}
			if done, err := g.Encode(res); done || err != nil {
				return err
			}
			fmt.Fprintf(g.Streams.Out, "saved %s from %s via %s\n  size       %s (%d bytes)\n  revision   %d\n  sha256     %s\n  duration   %s\n  throughput %s/s\n",
				res.File, res.Endpoint, res.Node, humanBytes(res.Size), res.Size, res.Revision, res.SHA256, res.Duration.Round(time.Millisecond), humanBytes(int64(res.BytesPerSecond)))
			for _, r := range res.Rotated {
				fmt.Fprintf(g.Streams.Out, "  kept       %s\n", r)
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().IntVar(&f.keep, "keep", 0, "keep this many snapshots: FILE and FILE.1 ... FILE.(N-1), oldest dropped (0: replace FILE)")
	cmd.Flags().BoolVar(&f.local, "local", false, "run on the control plane itself: local files, local etcd, no SSH")
	cmd.Flags().StringVar(&f.nodeName, "node", "", "control plane to snapshot through (default: the first selected); with --local, the name to report")
	cmd.Flags().DurationVar(&f.idle, "idle-timeout", etcd.DefaultIdleTimeout, "abandon the snapshot when etcd sends nothing for this long")
	return cmd
}

func newSnapshotVerify(g *cli.Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "verify FILE",
		Short: "Re-check a saved snapshot: sha256 trailer and database",
		Long: `Check that FILE carries etcd's sha256 trailer and that its body hashes to it,
then open it read-only with bbolt as "etcdutl snapshot status" does: integrity
check, revision, total keys, size, storage version and etcdutl's hash.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := etcd.VerifySnapshot(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if done, err := g.Encode(res); done || err != nil {
				return err
			}
			fmt.Fprintf(g.Streams.Out, "ok %s\n  size       %s (%d bytes)\n  sha256     %s (trailer matches)\n  revision   %d\n  total keys %d\n  db size    %d\n  version    %s\n  hash       %x\n",
				res.File, humanBytes(res.Size), res.Size, res.SHA256, res.Revision, res.TotalKey, res.TotalSize, res.Version, res.Hash)
			return nil
		},
	}
}

func newAudit(g *cli.Globals) *cobra.Command {
	var t timeoutFlag
	var verbose bool
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Who can reach etcd, and whether etcd lets anyone else in",
		Long: `Audit every selected control plane:
  static  CIS 2.1-2.7 from the live etcd process (its manifest when none runs),
          the API server's CIS 1.2.23 and 1.2.26, https-only client listeners,
          metrics on loopback only, and etcd's CA distinct from the cluster CA;
  probes  through the node: TLS with no client certificate, a certificate
          minted in memory from the cluster CA, and plain http must be refused;
          the API server's own credentials must be accepted;
  access  every certificate under /etc/kubernetes that etcd accepts as a
          client (its CN, expiry, and its key file's mode and owner).
Exit code 0 when everything is ok, 1 with warnings, 2 with a failure.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, nodes, pool, err := g.Open(inventory.RoleControlPlane)
			if err != nil {
				return err
			}
			defer pool.Close()
			fs, err := etcd.AuditAll(cmd.Context(), pool, nodes, g.Concurrency, etcd.AuditOptions{Timeout: t.timeout})
			if err != nil {
				return err
			}
			fs.Sort()
			switch g.Output {
			case cli.OutputJSON:
				err = fs.WriteJSON(g.Streams.Out)
			case cli.OutputYAML:
				_, err = g.Encode(fs)
			default:
				err = fs.WriteTable(g.Streams.Out, verbose || g.Verbose > 0)
			}
			if err != nil {
				return err
			}
			return cli.Exit(fs.ExitCode())
		},
	}
	t.register(cmd)
	cmd.Flags().BoolVar(&verbose, "all", false, "list passed checks too (table output)")
	return cmd
}

func newSnapshotSchedule(g *cli.Globals) *cobra.Command {
	var f cli.KeptFlags
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Take a verified etcd snapshot on every control plane from a timer",
		Long: `Install on each control plane this kbootstrap as ` + nodetimer.NodeBinary + ` and a systemd timer
(` + etcd.SnapshotUnit + `.timer; a cron entry in ` + nodetimer.CronDir + ` where the node has no
systemd) that runs

  kbootstrap etcd snapshot save --local --keep N DIR/snapshot.db

on the node itself, as the API server reaches etcd, keeping N verified
snapshots in DIR (mode 0700). It is the mechanism certs schedule uses: the
binary is checked to run on the node's architecture, files are written only
when they differ (a second run says "unchanged"), --remove uninstalls.`,
		Example: `  kbootstrap -i kbootstrap.yaml etcd snapshot schedule
  kbootstrap -i kbootstrap.yaml etcd snapshot schedule --keep 14 --on-calendar "*-*-* 00/6:00:00" --cron "0 */6 * * *"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, nodes, pool, err := g.Open(inventory.RoleControlPlane)
			if err != nil {
				return err
			}
			defer pool.Close()
			st := g.Status()
			defer st.Close()
			err = etcd.ScheduleSnapshots(cmd.Context(), etcd.ScheduleOptions{
				Nodes: nodes, Connector: pool, Concurrency: g.Concurrency,
				Kept: f.Kept(), Binary: f.Binary, Remove: f.Remove, Status: st,
			})
			if err != nil {
				return fmt.Errorf("kbootstrap etcd snapshot schedule: %w", err)
			}
			return nil
		},
	}
	f.Register(cmd.Flags(), etcd.SnapshotDefaults, "snapshots")
	return cmd
}
