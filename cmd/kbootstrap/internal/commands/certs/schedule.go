package certs

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/kbootstrap/kbootstrap/cmd/kbootstrap/internal/cli"
	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/renew"
)

type scheduleFlags struct {
	onCalendar, cron string
	within           days
	stagger          time.Duration
	binary, textfile string
	print, remove    bool
}

func newSchedule(g *cli.Globals) *cobra.Command {
	f := &scheduleFlags{within: days(30 * 24 * time.Hour)}
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Install the renewal on the control planes (systemd timer, or cron entry)",
		Long: `Install on each control plane this kbootstrap as ` + renew.NodeBinary + ` and a systemd timer
(` + renew.UnitName + `.timer; a cron entry in ` + renew.CronFile + ` where the node has no
systemd) that runs

  kbootstrap certs renew --local --if-expiring-within WINDOW --textfile FILE

The control planes never renew together: the i-th (from 0, in inventory order)
waits i × --stagger after the timer fires, then the timer's random delay of up
to --stagger/2; each run also takes the node's lock and waits until every etcd
member is healthy. The last run's time and result go to the Prometheus textfile.
Re-running converges; --remove uninstalls. --print prints the crontab line that
runs the renewal from this workstation over SSH instead, and changes nothing.`,
		Example: `  kbootstrap -i kbootstrap.yaml certs schedule
  kbootstrap -i kbootstrap.yaml certs schedule --on-calendar "*-*-01 03:00:00" --within 60d
  kbootstrap -i kbootstrap.yaml certs schedule --print >> my-crontab`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.print {
				return f.printCrontab(g)
			}
			inv, nodes, pool, err := g.Open(inventory.RoleControlPlane)
			if err != nil {
				return err
			}
			defer pool.Close()
			st := g.Status()
			defer st.Close()
			stagger := f.stagger
			if stagger == 0 {
				stagger = -1
			}
			err = renew.Schedule(cmd.Context(), renew.ScheduleOptions{
				Inventory: inv, Nodes: nodes, Connector: pool, Concurrency: g.Concurrency,
				OnCalendar: f.onCalendar, Cron: f.cron, Within: window(f.within), Stagger: stagger,
				Binary: f.binary, Textfile: f.textfile, Remove: f.remove, Status: st,
			})
			if err != nil {
				return fmt.Errorf("kbootstrap certs schedule: %w", err)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.onCalendar, "on-calendar", renew.DefaultOnCalendar, "when the systemd timer fires (systemd.time(7) calendar event)")
	fl.StringVar(&f.cron, "cron", renew.DefaultCron, "when the cron entry runs, on nodes without systemd, and in --print's line (crontab(5) schedule)")
	fl.Var(&f.within, "within", "renew when a certificate expires within this time (e.g. 30d)")
	fl.DurationVar(&f.stagger, "stagger", renew.DefaultStagger, "spacing between control planes; each also waits a random delay of up to half of it (0: none)")
	fl.StringVar(&f.binary, "binary", "", "the Linux kbootstrap executable to install (default: this one)")
	fl.StringVar(&f.textfile, "textfile", "", "Prometheus textfile of the last run (default "+renew.DefaultTextfile+" on the nodes; none with --print)")
	fl.BoolVar(&f.print, "print", false, "print the crontab line that runs the renewal from this workstation instead; change nothing")
	fl.BoolVar(&f.remove, "remove", false, "remove the timer or cron entry from the control planes")
	return cmd
}

// printCrontab prints the workstation's crontab line, with absolute paths
// (cron runs from the home directory with a bare PATH).
func (f *scheduleFlags) printCrontab(g *cli.Globals) error {
	if err := renew.ValidateCron(f.cron); err != nil {
		return err
	}
	if _, err := g.LoadInventory(); err != nil {
		return err
	}
	inv, err := filepath.Abs(g.Inventory)
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if f.binary != "" {
		if exe, err = filepath.Abs(f.binary); err != nil {
			return err
		}
	}
	fmt.Fprintf(g.Streams.Out, "# kbootstrap certs renew from this workstation (crontab -e; the SSH key must load without a prompt: ssh-agent or KBOOTSTRAP_SSH_PASSPHRASE)\n%s\n",
		renew.WorkstationCrontab(f.cron, exe, inv, window(f.within), f.textfile, renew.DefaultWorkstationLog()))
	return nil
}
