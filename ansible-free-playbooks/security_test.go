package playbooks

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runWithVars runs a playbook on one local host with -e values.
func runWithVars(t *testing.T, src string, extra map[string]string) (*Recap, *events, error) {
	t.Helper()
	pb, err := Parse("test.yaml", []byte(src), nil)
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, src)
	}
	ev := &events{}
	recap, err := Run(context.Background(), pb, Options{
		Inventory: testInventory("h1"), Connector: localConnector{}, Concurrency: 1, Reporter: ev, ExtraVars: extra,
	})
	return recap, ev, err
}

// TestTemplatedValuesReachNoShell: a value that still holds "{{" after
// rendering (it came from a var) is validated like any other, and every
// value that reaches a shell script is quoted: none of these runs the
// command hidden in it (security review, finding 2).
func TestTemplatedValuesReachNoShell(t *testing.T) {
	dir := t.TempDir()
	pwned := filepath.Join(dir, "pwned")
	payload := "{{x}};touch " + pwned + ";exit 0;"
	for _, tc := range []struct{ name, task string }{
		{"file.state", `file: {path: "` + dir + `/f", state: "{{ .vars.s }}"}`},
		{"modprobe.state", `modprobe: {name: "dummy", state: "{{ .vars.s }}", persistent: false}`},
		{"modprobe.name", `modprobe: {name: "{{ .vars.s }}", persistent: false}`},
		{"apt.state", `apt: {name: [hello], state: "{{ .vars.s }}"}`},
		{"apt.name", `apt: {name: ["{{ .vars.s }}"]}`},
		{"sysctl.name", `sysctl: {name: "{{ .vars.s }}", value: "1", reload: false, sysctl_file: "` + dir + `/s.conf"}`},
		{"lineinfile.state", `lineinfile: {path: "` + dir + `/l", line: "x", create: true, state: "{{ .vars.s }}"}`},
		{"file.mode", `file: {path: "` + dir + `/m", state: touch, mode: "{{ .vars.s }}"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := "name: inject\nhosts: all\ngather_facts: false\ntasks:\n  - name: t\n    " + tc.task + "\n"
			_, ev, _ := runWithVars(t, src, map[string]string{"s": payload})
			if _, err := os.Stat(pwned); err == nil {
				os.Remove(pwned)
				t.Fatalf("a templated %s ran its payload:\n%s", tc.name, ev)
			}
			if !strings.Contains(ev.String(), "failed") {
				t.Errorf("a templated %s with %q was accepted:\n%s", tc.name, payload, ev)
			}
		})
	}
}

// TestWaitForPathQuoted: a wait_for path holding a quote runs nothing when
// the wait times out (security review, finding 3).
func TestWaitForPathQuoted(t *testing.T) {
	dir := t.TempDir()
	pwned := filepath.Join(dir, "pwned")
	path := dir + "/x'; touch " + pwned + "; echo '"
	src := "name: w\nhosts: all\ngather_facts: false\ntasks:\n  - name: w\n    wait_for: {path: \"{{ .vars.p }}\", timeout: 300ms}\n"
	_, ev, _ := runWithVars(t, src, map[string]string{"p": path})
	if _, err := os.Stat(pwned); err == nil {
		t.Fatalf("the wait_for path ran its payload:\n%s", ev)
	}
	if !strings.Contains(ev.String(), "timed out after 300ms waiting for") {
		t.Errorf("no timeout reported:\n%s", ev)
	}
}

// TestImageImportStreamsToCtr: image_import hands a local tarball to ctr on
// its standard input; no copy goes through a path on the node that another
// user could create or swap first (security review, finding 1).
func TestImageImportStreamsToCtr(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o755)
	got := filepath.Join(dir, "imported")
	args := filepath.Join(dir, "args")
	// A ctr that lists no image and records what import is given.
	fake := "#!/bin/sh\necho \"$@\" >> " + args + "\ncase \"$*\" in *'images ls'*) exit 0 ;; *'images import'*) cat > " + got + " ;; esac\n"
	if err := os.WriteFile(filepath.Join(bin, "ctr"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	tarball := strings.Repeat("layer bytes ", 1000)
	src := filepath.Join(dir, "pause.tar")
	os.WriteFile(src, []byte(tarball), 0o644)
	before, _ := filepath.Glob("/var/tmp/kbootstrap-image-*")
	pb := "name: img\nhosts: all\ngather_facts: false\ntasks:\n  - name: images\n    image_import: {src: \"" + src + "\", images: [registry.k8s.io/pause:3.10.1]}\n"
	recap, ev, err := runWithVars(t, pb, nil)
	if err != nil || recap.Hosts["h1"].Changed != 1 {
		t.Fatalf("image_import: %v %+v\n%s", err, recap, ev)
	}
	if b, _ := os.ReadFile(got); string(b) != tarball {
		t.Errorf("ctr received %d bytes, want the %d of the tarball", len(b), len(tarball))
	}
	if a, _ := os.ReadFile(args); !strings.Contains(string(a), "images import -") {
		t.Errorf("ctr was run as:\n%s", a)
	}
	after, _ := filepath.Glob("/var/tmp/kbootstrap-image-*")
	if len(after) > len(before) {
		t.Errorf("a copy went through /var/tmp: %v", after)
	}
}
