package cli

import (
	"time"

	"github.com/spf13/pflag"

	"github.com/kbootstrap/kbootstrap/nodetimer"
)

// KeptFlags are the flags of a schedule command whose job keeps files in a
// directory on the nodes (etcd snapshot schedule, backup schedule).
type KeptFlags struct {
	kept   nodetimer.Kept
	Binary string
	Remove bool
}

// Register adds the flags, with def's values as defaults; what names the
// files kept ("snapshots", "bundles").
func (f *KeptFlags) Register(fl *pflag.FlagSet, def nodetimer.Kept, what string) {
	fl.StringVar(&f.kept.Dir, "dir", def.Dir, "directory on the nodes for the "+what)
	fl.IntVar(&f.kept.Keep, "keep", def.Keep, what+" kept on each node")
	fl.StringVar(&f.kept.OnCalendar, "on-calendar", def.OnCalendar, "when, as a systemd OnCalendar expression")
	fl.StringVar(&f.kept.Cron, "cron", def.Cron, "when, as a crontab schedule (nodes without systemd)")
	fl.DurationVar(&f.kept.RandomDelay, "randomized-delay", def.RandomDelay, "a random delay of up to this after the schedule, spreading the control planes (0: none)")
	fl.StringVar(&f.Binary, "binary", "", "the Linux kbootstrap to install on the nodes (default: this executable)")
	fl.BoolVar(&f.Remove, "remove", false, "remove the timer or cron entry (the binary and the "+what+" stay)")
}

// Kept is what the flags ask for; --randomized-delay 0 means none.
func (f *KeptFlags) Kept() nodetimer.Kept {
	k := f.kept
	if k.RandomDelay == 0 {
		k.RandomDelay = -time.Nanosecond
	}
	return k
}
