package nodetimer

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kbootstrap/kbootstrap/internal/golden"
)

func job() Job {
	return Job{
		Name: "kbootstrap-example", Header: "# Installed by a test.",
		Description: "kbootstrap: an example", TimerDescription: "kbootstrap: an example (daily)",
		ConditionPath: "/etc/kubernetes/manifests/etcd.yaml", ServiceLines: []string{"Nice=10"},
		Args: "etcd snapshot save --local --keep 3 /var/backups/etcd/snapshot.db", OnCalendar: "*-*-* 03:17:00", Cron: "17 3 * * *",
		Delay: time.Minute, RandomDelay: 10 * time.Minute,
	}
}

func TestJobFiles(t *testing.T) {
	j := job()
	golden.Check(t, "example.service", []byte(j.ServiceUnit()))
	golden.Check(t, "example.timer", []byte(j.TimerUnit()))
	golden.Check(t, "example-cron", []byte(j.CronEntry(42*time.Second)))
	j.CronLog = "/var/log/example.log"
	j.ConditionPath = ""
	golden.Check(t, "example-cron-log", []byte(j.CronEntry(0)))
}

func TestPreviousJitter(t *testing.T) {
	for _, cond := range []string{"", "/etc/kubernetes/manifests/etcd.yaml"} {
		j := job()
		j.ConditionPath = cond
		for _, d := range []time.Duration{0, time.Second, 7 * time.Minute, 10*time.Minute - time.Second} {
			got, ok := j.PreviousJitter(j.CronEntry(d))
			if !ok || got != d {
				t.Errorf("condition %q: PreviousJitter(CronEntry(%s)) = %s, %v", cond, d, got, ok)
			}
		}
		other := j
		other.Delay = 30 * time.Minute
		if _, ok := other.PreviousJitter(j.CronEntry(time.Minute)); ok {
			t.Error("an entry with another delay kept")
		}
		other = j
		other.Cron = "0 4 * * *"
		if _, ok := other.PreviousJitter(j.CronEntry(time.Minute)); ok {
			t.Error("an entry of another schedule kept")
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		mod  func(*Job)
		want string
	}{
		{func(j *Job) { j.OnCalendar = "daily\nExecStart=/bin/evil" }, "--on-calendar"},
		{func(j *Job) { j.Cron = "0 3 * *" }, `--cron "0 3 * *": five fields`},
		{func(j *Job) { j.Cron = "0 3 * * 1\n* * * * * root evil" }, "--cron"},
		{func(j *Job) { j.Args = "x\nExecStart=/bin/evil" }, "one line"},
	} {
		j := job()
		tc.mod(&j)
		if err := j.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate = %v, want %q", err, tc.want)
		}
	}
	if err := job().Validate(); err != nil {
		t.Errorf("valid job: %v", err)
	}
}

func TestLinuxArch(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	arch, err := LinuxArch(raw)
	if err != nil || arch != unameArch(map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[arch]) {
		t.Errorf("LinuxArch(this test binary) = %q, %v", arch, err)
	}
	if _, err := LinuxArch([]byte("#!/bin/sh\n")); err == nil || !strings.Contains(err.Error(), "not a Linux executable") {
		t.Errorf("LinuxArch(a script) = %v", err)
	}
	for m, want := range map[string]string{"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "s390x": "s390x"} {
		if got := unameArch(m); got != want {
			t.Errorf("unameArch(%s) = %s, want %s", m, got, want)
		}
	}
	b, err := LoadBinary(exe)
	if err != nil || b.Arch != arch || len(b.SHA256) != 64 {
		t.Errorf("LoadBinary = %+v, %v", b, err)
	}
	script := t.TempDir() + "/kbootstrap-darwin"
	os.WriteFile(script, []byte("not an ELF binary\n"), 0o755)
	if _, err := LoadBinary(script); err == nil || !strings.Contains(err.Error(), "pass --binary with a Linux build") {
		t.Errorf("LoadBinary(a script) = %v", err)
	}
}
