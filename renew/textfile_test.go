package renew

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTextfile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "textfile", "kbootstrap_certs_renew.prom")
	now := time.Unix(1_800_000_000, 0)
	o := Options{Textfile: file, Now: func() time.Time { return now }}.withDefaults()
	read := func() string {
		t.Helper()
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if err := o.writeTextfile(now.Add(-90*time.Second), []string{"cp1", "cp2"}, nil); err != nil {
		t.Fatal(err)
	}
	got := read()
	for _, want := range []string{
		"kbootstrap_certs_renew_last_run_timestamp_seconds 1800000000\n",
		"kbootstrap_certs_renew_last_run_duration_seconds 90\n",
		"kbootstrap_certs_renew_last_run_success 1\n",
		"kbootstrap_certs_renew_last_run_renewed_nodes 2\n",
		"kbootstrap_certs_renew_last_success_timestamp_seconds 1800000000\n",
		`kbootstrap_certs_renew_last_run_result{result="renewed"} 1` + "\n",
		`kbootstrap_certs_renew_last_run_result{result="failed"} 0` + "\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("after a success, the textfile lacks %q:\n%s", want, got)
		}
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("textfile mode: %v %v", fi, err)
	}

	// A later failure keeps the last success's time.
	now = now.Add(time.Hour)
	if err := o.writeTextfile(now, nil, fmt.Errorf("node cp2: %w", errors.New("boom"))); err != nil {
		t.Fatal(err)
	}
	got = read()
	for _, want := range []string{
		"kbootstrap_certs_renew_last_run_timestamp_seconds 1800003600\n",
		"kbootstrap_certs_renew_last_run_success 0\n",
		"kbootstrap_certs_renew_last_success_timestamp_seconds 1800000000\n",
		`kbootstrap_certs_renew_last_run_result{result="failed"} 1` + "\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("after a failure, the textfile lacks %q:\n%s", want, got)
		}
	}
}

func TestResult(t *testing.T) {
	for _, tc := range []struct {
		err     error
		renewed []string
		want    string
	}{
		{nil, nil, ResultNothing},
		{nil, []string{"cp1"}, ResultRenewed},
		{fmt.Errorf("node cp1: %w (held)", ErrLocked), nil, ResultLocked},
		{errors.New("x"), []string{"cp1"}, ResultFailed},
	} {
		if got := Result(tc.err, tc.renewed); got != tc.want {
			t.Errorf("Result(%v, %v) = %s, want %s", tc.err, tc.renewed, got, tc.want)
		}
	}
}
