package backup

import (
	"strings"
	"testing"

	"github.com/kbootstrap/kbootstrap/nodetimer"
)

func TestScheduleJob(t *testing.T) {
	j, err := ScheduleOptions{Cluster: "prod", Recipient: "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq"}.Job()
	if err != nil {
		t.Fatal(err)
	}
	if want := "backup --local --cluster prod --keep 7 --recipient age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq /var/backups/kbootstrap/prod.bundle"; j.Args != want {
		t.Errorf("args %q, want %q", j.Args, want)
	}
	if !strings.Contains(j.ServiceUnit(), "ExecStart=/usr/local/bin/kbootstrap backup --local") {
		t.Errorf("service unit:\n%s", j.ServiceUnit())
	}
	for _, tc := range []struct {
		o    ScheduleOptions
		want string
	}{
		{ScheduleOptions{Cluster: "a b"}, "inventory name"},
		{ScheduleOptions{Cluster: "prod", Kept: nodetimer.Kept{Dir: "rel/dir"}}, "--dir"},
		{ScheduleOptions{Cluster: "prod", Kept: nodetimer.Kept{Keep: -1}}, "--keep"},
		{ScheduleOptions{Cluster: "prod", Recipient: "age1; rm -rf /"}, "--recipient"},
		{ScheduleOptions{Cluster: "prod", Recipient: "AGE-SECRET-KEY-1ABC"}, "not an age public key"},
	} {
		if _, err := tc.o.Job(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.o, err, tc.want)
		}
	}
}
