package certs

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kbootstrap/kbootstrap/cmd/kbootstrap/internal/cli"
)

func TestParseDays(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"30d": 30 * 24 * time.Hour, "7d": 7 * 24 * time.Hour, "1d12h": 36 * time.Hour, "72h": 72 * time.Hour, "0d": 0, "90m": 90 * time.Minute,
	} {
		got, err := parseDays(in)
		if err != nil || got != want {
			t.Errorf("parseDays(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "d", "xd", "-3d", "3d-1h", "3 days", "1.5d"} {
		if _, err := parseDays(bad); err == nil {
			t.Errorf("parseDays(%q): no error", bad)
		}
	}
	d := days(30 * 24 * time.Hour)
	if d.String() != "30d" {
		t.Errorf("String() = %s", d.String())
	}
}

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	g := &cli.Globals{Output: cli.OutputTable, Concurrency: 4, Streams: cli.Streams{Out: &out, Err: &errb}}
	cmd := NewCommand(g)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	err := cmd.Execute()
	return out.String(), err
}

func TestCheckLocalEmptyDir(t *testing.T) {
	dir := t.TempDir()
	stdout, err := run(t, "check", "--pki-dir", filepath.Join(dir, "pki"), "--node-name", "cp1", "--format", "json")
	var ee *cli.ExitError
	if !errors.As(err, &ee) || ee.Code != 2 || ee.Err != nil {
		t.Fatalf("err %v, want exit 2 after the report", err)
	}
	var doc struct {
		Findings []struct{ Node, Check, File, Severity string }
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatal(err)
	}
	missing := 0
	for _, f := range doc.Findings {
		if f.Check == "file.present" && f.Severity == "fail" && f.Node == "cp1" {
			missing++
		}
	}
	if missing == 0 {
		t.Errorf("no missing-file findings:\n%s", stdout)
	}

	out := filepath.Join(dir, "pki.prom")
	stdout, err = run(t, "check", "--pki-dir", filepath.Join(dir, "pki"), "--node-name", "cp1", "--format", "prom", "--out", out)
	if !errors.As(err, &ee) || ee.Code != 2 || stdout != "" {
		t.Fatalf("--out: err %v, stdout %q", err, stdout)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(out)
	if fi.Mode().Perm() != 0o644 || !strings.Contains(string(b), `kbootstrap_pki_findings{node="cp1",severity="fail"}`) {
		t.Errorf("mode %v, content:\n%s", fi.Mode(), b)
	}
}

func TestCheckBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"check", "--format", "xml", "--pki-dir", "/nonexistent"},
		{"check", "--node-name", "cp1"},
		{"check", "--warn-within", "soon"},
		{"check", "--pki-dir", "/nonexistent", "--warn-within", "1d", "--fail-within", "2d"},
	} {
		if _, err := run(t, args...); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

func TestSchedulePrint(t *testing.T) {
	dir := t.TempDir()
	inv := filepath.Join(dir, "my cluster.yaml")
	if err := os.WriteFile(inv, []byte("name: c\nkubernetesVersion: v1.34.4\nssh:\n  user: root\nnodes:\n  - name: cp1\n    address: 192.0.2.10\n    role: control-plane\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	g := &cli.Globals{Inventory: inv, Output: cli.OutputTable, Concurrency: 4, Streams: cli.Streams{Out: &out, Err: &errb}}
	cmd := NewCommand(g)
	cmd.SetArgs([]string{"schedule", "--print", "--cron", "15 4 * * *", "--within", "20d"})
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "15 4 * * * ") || !strings.Contains(last, " -i '"+inv+"' certs renew --if-expiring-within 20d >> ") {
		t.Errorf("--print: %q", out.String())
	}
	if _, err := run(t, "schedule", "--print", "--cron", "15 4 * *"); err == nil || !strings.Contains(err.Error(), "five fields") {
		t.Errorf("--cron with four fields: %v", err)
	}
}
