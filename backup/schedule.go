package backup

import (
	"context"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"time"

	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/kubeadm"
	"github.com/kbootstrap/kbootstrap/node"
	"github.com/kbootstrap/kbootstrap/nodetimer"
)

// Defaults of Schedule.
const (
	Unit              = "kbootstrap-backup"
	DefaultDir        = "/var/backups/kbootstrap"
	DefaultKeep       = 7
	DefaultOnCalendar = "*-*-* 03:47:00"
	DefaultCron       = "47 3 * * *"
	DefaultDelay      = 10 * time.Minute
)

// ScheduleOptions configure Schedule.
type ScheduleOptions struct {
	Cluster     string
	Nodes       []inventory.Node // the control planes
	Connector   node.Connector
	Concurrency int
	// Dir on the nodes receives Dir/CLUSTER.bundle (0700); Keep bundles are
	// kept (CLUSTER.bundle.1 ...); when, as nodetimer.Kept says.
	nodetimer.Kept
	// Recipient, when given, encrypts every bundle to this age public key
	// (a timer has no passphrase to ask for; the identity stays off the
	// nodes).
	Recipient string
	// Binary is the Linux kbootstrap installed on the nodes ("" means this
	// executable).
	Binary string
	Remove bool
	Status nodetimer.Stepper
}

// ScheduleDefaults are backup schedule's defaults.
var ScheduleDefaults = nodetimer.Kept{Dir: DefaultDir, Keep: DefaultKeep, OnCalendar: DefaultOnCalendar, Cron: DefaultCron, RandomDelay: DefaultDelay}

func (o ScheduleOptions) withDefaults() ScheduleOptions {
	o.Kept = o.Kept.Or(ScheduleDefaults)
	return o
}

var (
	safeName      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	safeRecipient = regexp.MustCompile(`^age1[0-9a-z]+$`)
)

// Job is the timer job that writes a bundle on a control plane with
// `kbootstrap backup --local`.
func (o ScheduleOptions) Job() (nodetimer.Job, error) {
	o = o.withDefaults()
	if err := o.Check(); err != nil {
		return nodetimer.Job{}, err
	}
	if !safeName.MatchString(o.Cluster) {
		return nodetimer.Job{}, fmt.Errorf("inventory name %q: letters, digits, '.', '_' and '-' only, for the bundle's file name", o.Cluster)
	}
	args := "backup --local --cluster " + o.Cluster + " --keep " + strconv.Itoa(o.Keep)
	if o.Recipient != "" {
		if !safeRecipient.MatchString(o.Recipient) {
			return nodetimer.Job{}, fmt.Errorf("--recipient %q: not an age public key (age1...)", o.Recipient)
		}
		args += " --recipient " + o.Recipient
	}
	j := o.Into(nodetimer.Job{
		Name:             Unit,
		Header:           "# Installed by kbootstrap backup schedule; kbootstrap backup schedule --remove removes it.",
		Description:      "kbootstrap: backup bundle of the control plane",
		TimerDescription: "kbootstrap: backup bundle of the control plane (" + o.OnCalendar + ")",
		Documentation:    "https://github.com/kbootstrap/kbootstrap#disaster-recovery",
		After:            []string{"containerd.service", "kubelet.service"},
		ConditionPath:    kubeadm.EtcdManifest,
		ServiceLines:     []string{"Nice=10", "IOSchedulingClass=idle"},
		Args:             args + " " + path.Join(o.Dir, o.Cluster+".bundle"),
	})
	return j, j.Validate()
}

// Schedule installs (or with Remove, removes) the backup job on every
// control plane of opts.Nodes, through the one mechanism kbootstrap runs
// on the nodes from a timer (package nodetimer). Re-running converges.
func Schedule(ctx context.Context, opts ScheduleOptions) error {
	o := opts.withDefaults()
	j, err := o.Job()
	if err != nil {
		return err
	}
	return nodetimer.Schedule(ctx, nodetimer.ScheduleOptions{
		Nodes: o.Nodes, Connector: o.Connector, Concurrency: o.Concurrency,
		Job:    func(inventory.Node) nodetimer.Job { return j },
		Binary: o.Binary, Remove: o.Remove, Status: o.Status,
		What: "backup", Kept: nodetimer.NodeBinary + " and the bundles in " + o.Dir,
	})
}
