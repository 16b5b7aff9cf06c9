package playbook

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	playbooks "github.com/kbootstrap/kbootstrap/ansible-free-playbooks"
)

func TestRunFlagsVars(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"bin", "images"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(dir)
	exe, _ := os.Executable()
	exe, _ = filepath.EvalSymlinks(exe)
	declared := &playbooks.Playbook{Vars: map[string]any{"kbootstrap_binary": "/opt/kb"}}
	empty := &playbooks.Playbook{Vars: map[string]any{"kbootstrap_binary": ""}}
	for _, c := range []struct {
		name string
		f    runFlags
		pb   *playbooks.Playbook
		want map[string]string
		err  string
	}{
		{name: "dirs made absolute", f: runFlags{binaries: "bin", images: "./images", extra: []string{"x=1"}}, pb: empty,
			want: map[string]string{"binaries": filepath.Join(dir, "bin"), "images": filepath.Join(dir, "images"), "x": "1", "kbootstrap_binary": exe}},
		{name: "-e agreeing with --binaries", f: runFlags{binaries: "bin", extra: []string{"binaries=bin"}}, pb: empty,
			want: map[string]string{"binaries": filepath.Join(dir, "bin"), "kbootstrap_binary": exe}},
		{name: "-e disagreeing with --binaries", f: runFlags{binaries: "bin", extra: []string{"binaries=/elsewhere"}}, pb: empty, err: "disagree"},
		{name: "not a directory", f: runFlags{images: "nope"}, pb: empty, err: "--images"},
		{name: "kbootstrap_binary given by -e", f: runFlags{extra: []string{"kbootstrap_binary=/usr/bin/kb"}}, pb: empty,
			want: map[string]string{"kbootstrap_binary": "/usr/bin/kb"}},
		{name: "kbootstrap_binary given by the playbook", pb: declared, want: map[string]string{}},
		{name: "bad -e", f: runFlags{extra: []string{"novalue"}}, pb: empty, err: "key=value"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.f.vars(c.pb)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(c.want) {
				t.Errorf("vars %v, want %v", got, c.want)
			}
			for k, v := range c.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

func TestExtraVarsFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "secrets.yaml")
	os.WriteFile(good, []byte("token: \"it's s3cr3t\"\nport: 6443\nenabled: true\n"), 0o600)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("list: [a, b]\n"), 0o600)
	got, err := parseExtraVars([]string{"a=1", "@" + good, "port=7000"})
	if err != nil || got["token"] != "it's s3cr3t" || got["port"] != "7000" || got["enabled"] != "true" || got["a"] != "1" {
		t.Errorf("parseExtraVars = %v, %v", got, err)
	}
	for _, tc := range []struct{ arg, want string }{
		{"@" + bad, "list: want a string, number or boolean"},
		{"@" + filepath.Join(dir, "missing.yaml"), "no such file"},
		{"novalue", "want key=value or @FILE"},
	} {
		if _, err := parseExtraVars([]string{tc.arg}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseExtraVars(%s) = %v, want %q", tc.arg, err, tc.want)
		}
	}
}
