package etcd

import (
	"context"
	"path"
	"strconv"
	"time"

	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/kubeadm"
	"github.com/kbootstrap/kbootstrap/node"
	"github.com/kbootstrap/kbootstrap/nodetimer"
)

// Defaults of ScheduleSnapshots.
const (
	SnapshotUnit              = "kbootstrap-etcd-backup"
	DefaultSnapshotDir        = "/var/backups/etcd"
	DefaultSnapshotKeep       = 7
	DefaultSnapshotOnCalendar = "*-*-* 03:17:00"
	DefaultSnapshotCron       = "17 3 * * *"
	DefaultSnapshotDelay      = 10 * time.Minute
)

// ScheduleOptions configure ScheduleSnapshots.
type ScheduleOptions struct {
	Nodes       []inventory.Node // the control planes
	Connector   node.Connector
	Concurrency int
	// Dir on the nodes receives Dir/snapshot.db (0700); Keep snapshots are
	// kept (snapshot.db.1 ...); when, as nodetimer.Kept says.
	nodetimer.Kept
	// Binary is the Linux kbootstrap installed on the nodes ("" means this
	// executable).
	Binary string
	Remove bool
	Status nodetimer.Stepper
}

// SnapshotDefaults are etcd snapshot schedule's defaults.
var SnapshotDefaults = nodetimer.Kept{Dir: DefaultSnapshotDir, Keep: DefaultSnapshotKeep,
	OnCalendar: DefaultSnapshotOnCalendar, Cron: DefaultSnapshotCron, RandomDelay: DefaultSnapshotDelay}

func (o ScheduleOptions) withDefaults() ScheduleOptions {
	o.Kept = o.Kept.Or(SnapshotDefaults)
	return o
}

// SnapshotJob is the timer job that saves a verified snapshot on a control
// plane with `kbootstrap etcd snapshot save --local`.
func (o ScheduleOptions) SnapshotJob() (nodetimer.Job, error) {
	o = o.withDefaults()
	if err := o.Check(); err != nil {
		return nodetimer.Job{}, err
	}
	j := o.Into(nodetimer.Job{
		Name:             SnapshotUnit,
		Header:           "# Installed by kbootstrap etcd snapshot schedule; kbootstrap etcd snapshot schedule --remove removes it.",
		Description:      "kbootstrap: verified etcd snapshot",
		TimerDescription: "kbootstrap: verified etcd snapshot (" + o.OnCalendar + ")",
		Documentation:    "https://github.com/kbootstrap/kbootstrap#etcd",
		After:            []string{"containerd.service", "kubelet.service"},
		ConditionPath:    kubeadm.EtcdManifest,
		ServiceLines:     []string{"Nice=10", "IOSchedulingClass=idle"},
		Args:             "etcd snapshot save --local --keep " + strconv.Itoa(o.Keep) + " " + path.Join(o.Dir, "snapshot.db"),
	})
	return j, j.Validate()
}

// ScheduleSnapshots installs (or with Remove, removes) the snapshot job on
// every control plane of opts.Nodes: this kbootstrap and a systemd timer, or
// a cron entry where a node has no systemd. Re-running converges.
func ScheduleSnapshots(ctx context.Context, opts ScheduleOptions) error {
	o := opts.withDefaults()
	j, err := o.SnapshotJob()
	if err != nil {
		return err
	}
	return nodetimer.Schedule(ctx, nodetimer.ScheduleOptions{
		Nodes: o.Nodes, Connector: o.Connector, Concurrency: o.Concurrency,
		Job:    func(inventory.Node) nodetimer.Job { return j },
		Binary: o.Binary, Remove: o.Remove, Status: o.Status,
		What: "snapshot", Kept: nodetimer.NodeBinary + " and the snapshots in " + o.Dir,
	})
}
