package etcd

import (
	"strings"
	"testing"
	"time"

	"github.com/kbootstrap/kbootstrap/internal/golden"
	"github.com/kbootstrap/kbootstrap/nodetimer"
)

func TestSnapshotJob(t *testing.T) {
	j, err := ScheduleOptions{Kept: nodetimer.Kept{Keep: 3}}.SnapshotJob()
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "kbootstrap-etcd-backup.service", []byte(j.ServiceUnit()))
	golden.Check(t, "kbootstrap-etcd-backup.timer", []byte(j.TimerUnit()))
	golden.Check(t, "kbootstrap-etcd-backup-cron", []byte(j.CronEntry(0)))
	for _, tc := range []struct {
		o    ScheduleOptions
		want string
	}{
		{ScheduleOptions{Kept: nodetimer.Kept{Dir: "relative"}}, "--dir \"relative\": an absolute path"},
		{ScheduleOptions{Kept: nodetimer.Kept{Dir: "/var/backups/my etcd"}}, "without spaces"},
		{ScheduleOptions{Kept: nodetimer.Kept{Keep: -1}}, "--keep -1"},
		{ScheduleOptions{Kept: nodetimer.Kept{Cron: "5 4 * *"}}, "--cron"},
		{ScheduleOptions{Kept: nodetimer.Kept{OnCalendar: "daily\nExecStart=/bin/evil"}}, "--on-calendar"},
	} {
		if _, err := tc.o.SnapshotJob(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("SnapshotJob(%+v) = %v, want %q", tc.o, err, tc.want)
		}
	}
}

func TestSnapshotJobRandomDelay(t *testing.T) {
	for _, tc := range []struct {
		in, want time.Duration
	}{{0, DefaultSnapshotDelay}, {-1, 0}, {time.Minute, time.Minute}} {
		j, err := ScheduleOptions{Kept: nodetimer.Kept{RandomDelay: tc.in}}.SnapshotJob()
		if err != nil || j.RandomDelay != tc.want {
			t.Errorf("RandomDelay %s: job has %s (%v), want %s", tc.in, j.RandomDelay, err, tc.want)
		}
		// Defaulted twice (ScheduleSnapshots, then SnapshotJob): the same.
		if j2, _ := (ScheduleOptions{Kept: nodetimer.Kept{RandomDelay: tc.in}}).withDefaults().SnapshotJob(); j2.RandomDelay != tc.want {
			t.Errorf("RandomDelay %s defaulted twice: %s, want %s", tc.in, j2.RandomDelay, tc.want)
		}
	}
}
