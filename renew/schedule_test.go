package renew

import (
	"strings"
	"testing"
	"time"

	"github.com/kbootstrap/kbootstrap/internal/golden"
)

func TestScheduleFiles(t *testing.T) {
	o := ScheduleOptions{}.withDefaults()
	golden.Check(t, "kbootstrap-certs-renew.timer", []byte(o.TimerUnit()))
	golden.Check(t, "kbootstrap-certs-renew-0.service", []byte(o.ServiceUnit(0)))
	golden.Check(t, "kbootstrap-certs-renew-2.service", []byte(o.ServiceUnit(2)))
	golden.Check(t, "cron-1", []byte(o.CronEntry(1, 7*time.Minute)))

	custom := ScheduleOptions{OnCalendar: "*-*-01 04:00:00", Within: 36 * time.Hour, Stagger: -1, Textfile: "/srv/metrics/renew.prom"}.withDefaults()
	golden.Check(t, "custom.timer", []byte(custom.TimerUnit()))
	golden.Check(t, "custom-1.service", []byte(custom.ServiceUnit(1)))
	golden.Check(t, "custom-cron-1", []byte(custom.CronEntry(1, 0)))
}

func TestPreviousJitter(t *testing.T) {
	o := ScheduleOptions{}.withDefaults()
	for _, j := range []time.Duration{0, time.Second, 7 * time.Minute, 15*time.Minute - time.Second} {
		got, ok := previousJitter(o.CronEntry(2, j), o, 2)
		if !ok || got != j {
			t.Errorf("previousJitter(CronEntry(2, %s)) = %s, %v", j, got, ok)
		}
	}
	// Another place or schedule: drawn again.
	if _, ok := previousJitter(o.CronEntry(2, time.Minute), o, 0); ok {
		t.Error("an entry for the third control plane kept on the first")
	}
	other := ScheduleOptions{Cron: "0 4 * * *"}.withDefaults()
	if _, ok := previousJitter(o.CronEntry(1, time.Minute), other, 1); ok {
		t.Error("an entry of another schedule kept")
	}
}

func previousJitter(old string, o ScheduleOptions, i int) (time.Duration, bool) {
	return o.job(i).PreviousJitter(old)
}

func TestWorkstationCrontab(t *testing.T) {
	got := WorkstationCrontab("0 3 * * 1", "/usr/local/bin/kbootstrap", "/home/me/my cluster/kbootstrap.yaml", 30*24*time.Hour, "", "/home/me/.kbootstrap/certs-renew.log")
	want := `0 3 * * 1 /usr/local/bin/kbootstrap -i '/home/me/my cluster/kbootstrap.yaml' certs renew --if-expiring-within 30d >> /home/me/.kbootstrap/certs-renew.log 2>&1`
	if got != want {
		t.Errorf("WorkstationCrontab =\n%s\nwant\n%s", got, want)
	}
}

func TestScheduleValidate(t *testing.T) {
	for _, tc := range []struct {
		o    ScheduleOptions
		want string
	}{
		{ScheduleOptions{Textfile: "relative.prom"}, "--textfile relative.prom: an absolute path"},
		{ScheduleOptions{Textfile: "/var/lib/my metrics/x.prom"}, "without spaces"},
		{ScheduleOptions{OnCalendar: "daily\nExecStart=/bin/evil"}, "--on-calendar"},
		{ScheduleOptions{Cron: "0 3 * *"}, "--cron \"0 3 * *\": five fields"},
		{ScheduleOptions{Cron: "0 3 * * 1\n* * * * * root evil"}, "--cron"},
	} {
		err := tc.o.withDefaults().validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("validate(%+v) = %v, want %q", tc.o, err, tc.want)
		}
	}
	if err := (ScheduleOptions{}).withDefaults().validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

func TestFormatWindow(t *testing.T) {
	for d, want := range map[time.Duration]string{30 * 24 * time.Hour: "30d", 36 * time.Hour: "36h0m0s", 90 * time.Minute: "1h30m0s"} {
		if got := FormatWindow(d); got != want {
			t.Errorf("FormatWindow(%s) = %s, want %s", d, got, want)
		}
	}
}
