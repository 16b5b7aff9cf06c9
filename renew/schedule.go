package renew

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kbootstrap/kbootstrap/nodetimer"
	"github.com/kbootstrap/kbootstrap/progress"

	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/node"
)

// What `certs schedule` installs on a control plane.
const (
	NodeBinary        = nodetimer.NodeBinary
	UnitName          = "kbootstrap-certs-renew"
	CronFile          = nodetimer.CronDir + "/" + UnitName
	CronLog           = "/var/log/kbootstrap-certs-renew.log"
	DefaultTextfile   = "/var/lib/node_exporter/textfile_collector/kbootstrap_certs_renew.prom"
	DefaultOnCalendar = "Mon *-*-* 03:00:00"
	DefaultCron       = "0 3 * * 1"
	DefaultStagger    = 30 * time.Minute
)

// ScheduleOptions configure Schedule.
type ScheduleOptions struct {
	Inventory *inventory.Inventory
	// Nodes are the control planes to install on; each one's delay comes
	// from its place among all the inventory's control planes, so that a
	// partial run keeps the others' spacing.
	Nodes       []inventory.Node
	Connector   node.Connector
	Concurrency int

	// OnCalendar is the systemd timer's calendar ("" means
	// DefaultOnCalendar); Cron the crontab schedule where there is no
	// systemd ("" means DefaultCron).
	OnCalendar, Cron string
	// Within is the renewal window passed to --if-expiring-within (0: 30d).
	Within time.Duration
	// Stagger spaces the control planes: the i-th (from 0) waits i×Stagger
	// after the timer fires, then the timer's random delay of up to
	// Stagger/2, so two control planes start at least Stagger/2 apart.
	// 0 means DefaultStagger; a negative value means none.
	Stagger time.Duration
	// Binary is the Linux kbootstrap executable installed as NodeBinary;
	// "" means this very executable.
	Binary string
	// Textfile is the Prometheus textfile on the node ("" means
	// DefaultTextfile).
	Textfile string
	// Remove uninstalls the timer or cron entry instead.
	Remove bool

	Status *progress.Status
}

func (o ScheduleOptions) withDefaults() ScheduleOptions {
	if o.OnCalendar == "" {
		o.OnCalendar = DefaultOnCalendar
	}
	if o.Cron == "" {
		o.Cron = DefaultCron
	}
	if o.Within <= 0 {
		o.Within = 30 * 24 * time.Hour
	}
	if o.Stagger == 0 {
		o.Stagger = DefaultStagger
	}
	if o.Stagger < 0 {
		o.Stagger = 0
	}
	if o.Textfile == "" {
		o.Textfile = DefaultTextfile
	}
	return o
}

// validate refuses what would break the unit files or the cron entry.
func (o ScheduleOptions) validate() error {
	if !filepath.IsAbs(o.Textfile) {
		return fmt.Errorf("--textfile %s: an absolute path on the nodes is needed", o.Textfile)
	}
	if strings.ContainsAny(o.Textfile, " \t\n\"'\\%$;&|<>`") {
		return fmt.Errorf("--textfile %q: an absolute path without spaces, quotes or shell characters is needed", o.Textfile)
	}
	return o.job(0).Validate()
}

// ValidateCron checks a crontab schedule's shape: five fields, one line.
func ValidateCron(cron string) error { return nodetimer.ValidateCron(cron) }

// FormatWindow writes a window as --if-expiring-within takes it: "30d",
// "36h0m0s".
func FormatWindow(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}

// renewArgs is the renewal the timer runs on the node.
func (o ScheduleOptions) renewArgs() string {
	return fmt.Sprintf("certs renew --local --if-expiring-within %s --textfile %s", FormatWindow(o.Within), o.Textfile)
}

// delay is the i-th control plane's fixed wait after the timer fires.
func (o ScheduleOptions) delay(i int) time.Duration { return time.Duration(i) * o.Stagger }

// job is the renewal on the i-th control plane.
func (o ScheduleOptions) job(i int) nodetimer.Job {
	return nodetimer.Job{
		Name:             UnitName,
		Header:           "# Installed by kbootstrap certs schedule; kbootstrap certs schedule --remove removes it.",
		Description:      "kbootstrap: renew this control plane's certificates expiring within " + FormatWindow(o.Within),
		TimerDescription: "kbootstrap: certificate renewal (" + o.OnCalendar + ")",
		Documentation:    "https://github.com/kbootstrap/kbootstrap#cron-workflow",
		After:            []string{"containerd.service", "kubelet.service"},
		ServiceLines: []string{
			"# A renewal restarts the static pods one at a time and waits on their health;",
			"# the wait below keeps this control plane apart from the others.",
			"TimeoutStartSec=infinity",
			"# Stopped (shutdown, systemctl stop), a renewal puts the node back first.",
			"TimeoutStopSec=20min",
		},
		Args:        o.renewArgs(),
		OnCalendar:  o.OnCalendar,
		Cron:        o.Cron,
		Delay:       o.delay(i),
		RandomDelay: o.Stagger / 2,
		CronLog:     CronLog,
	}
}

// ServiceUnit is the oneshot service the timer starts on the i-th control
// plane.
func (o ScheduleOptions) ServiceUnit(i int) string { return o.job(i).ServiceUnit() }

// TimerUnit is the timer, the same on every control plane.
func (o ScheduleOptions) TimerUnit() string { return o.job(0).TimerUnit() }

// CronEntry is the /etc/cron.d file of the i-th control plane on a node
// without systemd, with its random delay jitter in [0, Stagger/2).
func (o ScheduleOptions) CronEntry(i int, jitter time.Duration) string {
	return o.job(i).CronEntry(jitter)
}

// WorkstationCrontab is the crontab line that runs the renewal from the
// workstation over SSH instead, for `certs schedule --print`.
func WorkstationCrontab(cron, exe, inventoryFile string, within time.Duration, textfile, logFile string) string {
	cmd := fmt.Sprintf("%s -i %s certs renew --if-expiring-within %s", node.ShellQuote(exe), node.ShellQuote(inventoryFile), FormatWindow(within))
	if textfile != "" {
		cmd += " --textfile " + node.ShellQuote(textfile)
	}
	return fmt.Sprintf("%s %s >> %s 2>&1", cron, cmd, node.ShellQuote(logFile))
}

// Schedule installs (or with Remove, removes) the renewal on each control
// plane: this kbootstrap as NodeBinary and a systemd timer, or a cron entry
// where the node has no systemd. Re-running converges: files are written
// only when they differ.
func Schedule(ctx context.Context, opts ScheduleOptions) error {
	o := opts.withDefaults()
	if err := o.validate(); err != nil {
		return err
	}
	index := map[string]int{}
	for _, n := range o.Inventory.Nodes {
		if n.Role == inventory.RoleControlPlane {
			index[n.Name] = len(index)
		}
	}
	return nodetimer.Schedule(ctx, nodetimer.ScheduleOptions{
		Nodes: o.Nodes, Connector: o.Connector, Concurrency: o.Concurrency,
		Job:    func(in inventory.Node) nodetimer.Job { return o.job(index[in.Name]) },
		Binary: o.Binary, Remove: o.Remove, Status: o.Status,
		What: "renewal", Kept: NodeBinary,
	})
}

// DefaultWorkstationLog is where --print's crontab line appends its output.
func DefaultWorkstationLog() string {
	if d, err := os.UserHomeDir(); err == nil {
		return filepath.Join(d, ".kbootstrap", "certs-renew.log")
	}
	return "kbootstrap-certs-renew.log"
}
