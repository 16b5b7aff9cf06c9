package e2e

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kbootstrap/kbootstrap/test/lab"
)

// playbookSpec is a one-node lab for the playbook tests that install
// packages, leave a daemon running or wipe Kubernetes state: kept apart from
// the shared lab, whose nodes other tests expect pristine.
var playbookSpec = labSpec{
	id: "pbk", subnet: "10.87.0.0/24", subnet2: "10.88.0.0/24",
	nodes: []lab.NodeSpec{{Name: "pb1", Role: "control-plane"}},
}

// hostStats is one host of `playbook run -o json`.
type hostStats struct {
	OK      int `json:"ok"`
	Changed int `json:"changed"`
	Failed  int `json:"failed"`
	Skipped int `json:"skipped"`
	Ignored int `json:"ignored"`
}

func parseRecap(t *testing.T, stdout string) map[string]hostStats {
	t.Helper()
	var r struct {
		Hosts map[string]hostStats `json:"hosts"`
	}
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("playbook run -o json is not the recap: %v\n%s", err, stdout)
	}
	return r.Hosts
}

// runPlaybook runs a playbook with -o json and returns the recap and stderr
// (the progress lines).
func runPlaybook(t *testing.T, args ...string) (map[string]hostStats, string, int) {
	t.Helper()
	stdout, stderr, code := kb(t, append([]string{"-o", "json", "playbook", "run"}, args...)...)
	if code == 2 && stdout == "" {
		return nil, stderr, code
	}
	return parseRecap(t, stdout), stderr, code
}

// modulesPlaybook uses every module but service (no systemd in the lab yet)
// and apt and image_import (their own tests): each task changes something
// on a fresh node.
const modulesPlaybook = `name: modules
hosts: all
vars: {greeting: hello}
tasks:
  - name: directory
    file: {path: /etc/kb-e2e, state: directory, mode: "0750"}
  - name: inline content
    copy: {dest: /etc/kb-e2e/conf, content: "{{ .vars.greeting }} from {{ .facts.hostname }} ({{ .facts.os }} {{ .facts.os_version }})\n", mode: "0640", owner: vagrant}
  - name: template
    template: {src: files/motd.tmpl, dest: /etc/kb-e2e/motd}
  - name: link
    file: {path: /etc/kb-e2e/current, state: link, src: /etc/kb-e2e/conf}
  - name: a line
    lineinfile: {path: /etc/kb-e2e/lines, line: "answer=42", regexp: "^answer=", create: true}
  - name: sysctl
    sysctl: {name: net.ipv4.ip_forward, value: "1", sysctl_file: /etc/sysctl.d/90-kb-e2e.conf}
  - name: module
    modprobe: {name: overlay}
  - name: once
    shell: {cmd: "hostname > /etc/kb-e2e/stamp", creates: /etc/kb-e2e/stamp}
  - name: unless
    command: {argv: [touch, /etc/kb-e2e/touched], unless: "test -e /etc/kb-e2e/touched"}
  - name: binaries
    upload: {src: bin, dest: /opt/kb-e2e/bin}
  - name: fetch
    fetch: {src: /etc/kb-e2e/conf, dest: FETCHDIR}
  - name: sshd listens
    wait_for: {port: "22", timeout: 10s}
    register: sshd
  - name: removed
    file: {path: /etc/kb-e2e-old, state: absent}
`

// modulesState lists what modulesPlaybook touches on a node: paths with
// mode, owner and content hash, and the live sysctl.
const modulesState = `for p in /etc/kb-e2e /opt/kb-e2e /etc/kb-e2e-old /etc/sysctl.d/90-kb-e2e.conf /etc/modules-load.d/overlay.conf; do
  [ -e "$p" ] || [ -L "$p" ] || { echo "$p absent"; continue; }
  find "$p" | sort | while read -r f; do
    if [ -f "$f" ] && [ ! -L "$f" ]; then h=$(sha256sum < "$f" | cut -c1-16); else h=$(readlink "$f"); fi
    echo "$(stat -c '%n %F %a %U' "$f") $h"
  done
done
echo "ip_forward=$(cat /proc/sys/net/ipv4/ip_forward)"
`

func TestPlaybookModulesIdempotentAndCheckChangesNothing(t *testing.T) {
	l := sharedLab(t)
	dir := t.TempDir()
	fetchDir := filepath.Join(dir, "fetched")
	writeFile(t, dir, "playbook.yaml", strings.ReplaceAll(modulesPlaybook, "FETCHDIR", fetchDir), 0o644)
	os.MkdirAll(filepath.Join(dir, "files"), 0o755)
	os.MkdirAll(filepath.Join(dir, "bin", "images"), 0o755)
	writeFile(t, dir, "files/motd.tmpl", "{{ .host.name }} is a {{ .host.role }} of {{ .inventory.name }}\n", 0o644)
	writeFile(t, dir, "bin/tool", "#!/bin/sh\necho tool\n", 0o755)
	writeFile(t, dir, "bin/images/pause.tar", strings.Repeat("layer", 100000), 0o644)
	pb := filepath.Join(dir, "playbook.yaml")
	const tasks = 13
	// Stale markers of an earlier run, and a file the play removes; the
	// nodes are left as found.
	const clean = "rm -rf /etc/kb-e2e /opt/kb-e2e /etc/kb-e2e-old /etc/sysctl.d/90-kb-e2e.conf /etc/modules-load.d/overlay.conf; echo 0 > /proc/sys/net/ipv4/ip_forward"
	for _, n := range l.Nodes {
		labExec(t, n.Name, clean+"; mkdir -p /etc/kb-e2e-old")
		t.Cleanup(func() { labExec(t, n.Name, clean) })
	}
	state := func() map[string]string {
		out := map[string]string{}
		for _, n := range l.Nodes {
			out[n.Name] = labExec(t, n.Name, modulesState)
		}
		return out
	}
	before := state()

	recap, stderr, code := runPlaybook(t, "--check", pb)
	if code != 0 {
		t.Fatalf("--check: exit %d\n%s", code, stderr)
	}
	for _, n := range l.Nodes {
		// wait_for is skipped in check mode, and so is fetching a file
		// that an earlier task would create.
		if got := recap[n.Name]; got != (hostStats{OK: tasks - 2, Changed: tasks - 2, Skipped: 2}) {
			t.Errorf("--check %s: %+v, want %d changed\n%s", n.Name, got, tasks-2, stderr)
		}
	}
	if after := state(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("--check changed the nodes:\nbefore:\n%v\nafter:\n%v", before, after)
	}
	if _, err := os.Stat(fetchDir); err == nil {
		t.Error("--check fetched a file")
	}

	recap, stderr, code = runPlaybook(t, pb)
	if code != 0 {
		t.Fatalf("first run: exit %d\n%s", code, stderr)
	}
	for _, n := range l.Nodes {
		// Every task changes, but wait_for, which never changes anything.
		if got := recap[n.Name]; got != (hostStats{OK: tasks, Changed: tasks - 1}) {
			t.Errorf("first run %s: %+v\n%s", n.Name, got, stderr)
		}
		if !strings.Contains(stderr, n.Name+" | changed | inline content") {
			t.Errorf("no progress line for %s:\n%s", n.Name, stderr)
		}
	}
	got := labExec(t, "cp2", "cat /etc/kb-e2e/conf /etc/kb-e2e/motd /etc/kb-e2e/lines /etc/kb-e2e/stamp /etc/kb-e2e/current; stat -c '%a %U' /etc/kb-e2e/conf /etc/kb-e2e; cat /proc/sys/net/ipv4/ip_forward /etc/sysctl.d/90-kb-e2e.conf /etc/modules-load.d/overlay.conf; /opt/kb-e2e/bin/tool; test -f /etc/kb-e2e/touched && echo touched; test -e /etc/kb-e2e-old || echo old-gone")
	want := "hello from cp2 (debian 12)\ncp2 is a control-plane of e2e\nanswer=42\ncp2\nhello from cp2 (debian 12)\n640 vagrant\n750 root\n1\nnet.ipv4.ip_forward = 1\noverlay\ntool\ntouched\nold-gone\n"
	if got != want {
		t.Errorf("cp2 after the run:\n%s\nwant:\n%s", got, want)
	}
	fetched, err := os.ReadFile(filepath.Join(fetchDir, "cp3", "etc/kb-e2e/conf"))
	if err != nil || string(fetched) != "hello from cp3 (debian 12)\n" {
		t.Errorf("fetched %q, %v", fetched, err)
	}
	if fi, err := os.Stat(filepath.Join(fetchDir, "cp3", "etc/kb-e2e/conf")); err == nil && fi.Mode().Perm() != 0o600 {
		t.Errorf("fetched file mode %v, want 0600", fi.Mode().Perm())
	}

	afterFirst := state()
	for _, check := range []bool{false, true} {
		args := []string{pb}
		if check {
			args = []string{"--check", pb}
		}
		recap, stderr, code = runPlaybook(t, args...)
		if code != 0 {
			t.Fatalf("second run (check %v): exit %d\n%s", check, code, stderr)
		}
		for _, n := range l.Nodes {
			want := hostStats{OK: tasks}
			if check {
				want = hostStats{OK: tasks - 1, Skipped: 1}
			}
			if got := recap[n.Name]; got != want {
				t.Errorf("second run (check %v) %s: %+v, want %+v\n%s", check, n.Name, got, want, stderr)
			}
		}
	}
	if after := state(); fmt.Sprint(after) != fmt.Sprint(afterFirst) {
		t.Errorf("the second run changed the nodes:\nbefore:\n%v\nafter:\n%v", afterFirst, after)
	}
}

func TestPlaybookThroughSudo(t *testing.T) {
	l := sharedLab(t)
	inv := inventoryFor(t, l, l.KnownHostsFile, "vagrant", labNodes(t, l))
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	writeFile(t, dir, "bin/tool", "#!/bin/sh\necho tool\n", 0o755)
	pb := writeFile(t, dir, "sudo.yaml", `name: sudo
hosts: all
become: true
tasks:
  - name: root-only directory
    file: {path: /root/kb-sudo, state: directory, mode: "0700"}
  - name: a root file
    copy: {dest: /root/kb-sudo/conf, content: "as root\n", mode: "0600"}
  - name: a line
    lineinfile: {path: /root/kb-sudo/lines, line: "second", create: true, mode: "0600"}
  - name: binaries
    upload: {src: bin, dest: /root/kb-sudo/bin}
  - name: who am I
    command: id -un
    register: who
    changed_when: 'ne .registered.who.stdout "root"'
  - name: not through sudo
    command: id -un
    become: false
    register: plain
    changed_when: 'ne .registered.plain.stdout "vagrant"'
`, 0o644)
	for _, n := range l.Nodes {
		labExec(t, n.Name, "rm -rf /root/kb-sudo")
		t.Cleanup(func() { labExec(t, n.Name, "rm -rf /root/kb-sudo") })
	}
	for i, want := range []hostStats{{OK: 6, Changed: 4}, {OK: 6}} {
		stdout, stderr, code := kb(t, "-i", inv, "-o", "json", "playbook", "run", pb)
		if code != 0 {
			t.Fatalf("run %d: exit %d\n%s", i+1, code, stderr)
		}
		for name, got := range parseRecap(t, stdout) {
			if got != want {
				t.Errorf("run %d %s: %+v, want %+v\n%s", i+1, name, got, want, stderr)
			}
		}
	}
	if got := labExec(t, "cp1", "cat /root/kb-sudo/conf /root/kb-sudo/lines; stat -c '%a %U' /root/kb-sudo/conf /root/kb-sudo/lines /root/kb-sudo/bin/tool"); got != "as root\nsecond\n600 root\n600 root\n755 root\n" {
		t.Errorf("cp1: %q", got)
	}
}

func TestPlaybookFailingHostLeavesOthersGoing(t *testing.T) {
	l := sharedLab(t)
	for _, n := range l.Nodes {
		labExec(t, n.Name, "rm -f /root/kb-after")
		t.Cleanup(func() { labExec(t, n.Name, "rm -f /root/kb-after") })
	}
	pb := writeFile(t, t.TempDir(), "fails.yaml", `name: fails on cp2
hosts: all
tasks:
  - name: before
    command: "true"
  - name: breaks on cp2
    shell: '[ "$(hostname)" != cp2 ] || { echo cp2 is broken >&2; exit 4; }'
  - name: after
    file: {path: /root/kb-after, state: touch}
`, 0o644)
	stdout, stderr, code := kb(t, "playbook", "run", pb)
	if code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	for _, want := range []string{
		"cp2 | failed | breaks on cp2: exit status 4: cp2 is broken",
		"cp1 | changed | after", "cp3 | changed | after",
		"PLAY RECAP",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if want := fmt.Sprintf(`node cp2: %s:6: task "breaks on cp2": exit status 4: cp2 is broken`, pb); !strings.Contains(stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr)
	}
	for name, want := range map[string]string{"cp1": "yes\n", "cp2": "no\n", "cp3": "yes\n"} {
		if got := labExec(t, name, "test -e /root/kb-after && echo yes || echo no"); got != want {
			t.Errorf("%s ran the task after the failure: %q", name, got)
		}
	}
	// With the recap as JSON.
	recap, _, code := runPlaybook(t, pb)
	if code != 2 || recap["cp2"] != (hostStats{OK: 1, Changed: 1, Failed: 1}) || recap["cp1"] != (hostStats{OK: 3, Changed: 2}) {
		t.Errorf("exit %d recap %+v", code, recap)
	}
}

func TestPlaybookBadPlaybookRejectedWithLine(t *testing.T) {
	sharedLab(t)
	pb := writeFile(t, t.TempDir(), "bad.yaml", `name: bad
hosts: all
tasks:
  - name: fine
    command: "true"
  - name: typo
    copy:
      dest: /root/x
      content: y
      mdoe: "0600"
`, 0o644)
	_, stderr, code := kb(t, "playbook", "run", pb)
	if code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	if want := pb + `:10: task "typo": copy: unknown argument "mdoe"`; !strings.Contains(stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr)
	}
	if got := labExec(t, "cp1", "test -e /root/x && echo ran || echo untouched"); got != "untouched\n" {
		t.Errorf("a bad playbook ran: %s", got)
	}
}

func TestPlaybookAptInstallsPackage(t *testing.T) {
	l := labFor(t, playbookSpec)
	inv := l.InventoryFile
	labExecIn(t, l, "pb1", "dpkg --purge hello >/dev/null 2>&1; rm -f /etc/apt/sources.list.d/kb-backports.list /etc/apt/keyrings/kb-backports.gpg")
	// A repository with its signing key: Debian's backports, signed by the
	// archive keyring of this machine. apt-get update fails unless the key
	// file and signed-by are right.
	pb := writeFile(t, t.TempDir(), "apt.yaml", `name: apt
hosts: all
tasks:
  - name: hello
    apt:
      name: [hello]
      update_cache: true
      repo:
        name: kb-backports
        uri: http://deb.debian.org/debian
        suite: bookworm-backports
        components: [main]
        key_src: /usr/share/keyrings/debian-archive-keyring.gpg
`, 0o644)
	recap, stderr, code := runPlaybook(t, "-i", inv, "--check", pb)
	if code != 0 || recap["pb1"] != (hostStats{OK: 1, Changed: 1}) {
		t.Fatalf("--check: exit %d %+v\n%s", code, recap, stderr)
	}
	if got := labExecIn(t, l, "pb1", "command -v hello || echo absent"); got != "absent\n" {
		t.Fatalf("--check installed hello: %s", got)
	}
	for i, want := range []hostStats{{OK: 1, Changed: 1}, {OK: 1}} {
		recap, stderr, code = runPlaybook(t, "-i", inv, pb)
		if code != 0 || recap["pb1"] != want {
			t.Fatalf("run %d: exit %d %+v, want %+v\n%s", i+1, code, recap, want, stderr)
		}
	}
	if got := labExecIn(t, l, "pb1", "hello"); got != "Hello, world!\n" {
		t.Errorf("hello prints %q", got)
	}
	want := "deb [signed-by=/etc/apt/keyrings/kb-backports.gpg] http://deb.debian.org/debian bookworm-backports main\nbackports lists\n"
	if got := labExecIn(t, l, "pb1", "cat /etc/apt/sources.list.d/kb-backports.list; ls /var/lib/apt/lists | grep -q bookworm-backports_InRelease && echo backports lists"); got != want {
		t.Errorf("repository: %q, want %q", got, want)
	}
	// And away again.
	pb = writeFile(t, t.TempDir(), "apt.yaml", "name: apt\nhosts: all\ntasks:\n  - name: no hello\n    apt: {name: hello, state: absent, purge: true}\n", 0o644)
	for i, want := range []hostStats{{OK: 1, Changed: 1}, {OK: 1}} {
		recap, stderr, code = runPlaybook(t, "-i", inv, pb)
		if code != 0 || recap["pb1"] != want {
			t.Fatalf("remove run %d: exit %d %+v, want %+v\n%s", i+1, code, recap, want, stderr)
		}
	}
}

func TestPlaybookShippedRunTwice(t *testing.T) {
	l := labFor(t, playbookSpec)
	stdout, _, code := kb(t, "-i", l.InventoryFile, "playbook", "list")
	if code != 0 || !strings.Contains(stdout, "example") || strings.Contains(stdout, "reset") {
		t.Fatalf("list: exit %d (want example and no reset playbook: kbootstrap reset is the one reset)\n%s", code, stdout)
	}
	recap, stderr, code := runPlaybook(t, "-i", l.InventoryFile, "example")
	if code != 0 || recap["pb1"].Changed == 0 {
		t.Fatalf("first run: exit %d %+v\n%s", code, recap, stderr)
	}
	recap, stderr, code = runPlaybook(t, "-i", l.InventoryFile, "example")
	if code != 0 || recap["pb1"].Changed != 0 || recap["pb1"].Failed != 0 {
		t.Fatalf("second run: exit %d %+v\n%s", code, recap, stderr)
	}
}

// TestResetLeftovers: kbootstrap reset removes what a failed kubeadm init
// leaves, on a node without kubeadm too, and a second reset passes.
func TestResetLeftovers(t *testing.T) {
	l := labFor(t, playbookSpec)
	labExecIn(t, l, "pb1", "mkdir -p /etc/cni/net.d /var/lib/etcd/member /root/.kube && touch /etc/cni/net.d/10-bridge.conflist /var/lib/etcd/member/db /root/.kube/config")
	for i := 1; i <= 2; i++ {
		if r := kbRun(t, nil, "-i", l.InventoryFile, "reset", "--yes"); r.code != 0 {
			t.Fatalf("reset %d: exit %d\n%s\n%s", i, r.code, r.stdout, r.stderr)
		}
	}
	if got := labExecIn(t, l, "pb1", "ls -A /etc/cni/net.d /var/lib/etcd /root/.kube 2>&1"); strings.Contains(got, "10-bridge") || strings.Contains(got, "member") || strings.Contains(got, "config") {
		t.Errorf("reset left:\n%s", got)
	}
}

// imageTarball builds a docker-archive tarball of a one-file image.
func imageTarball(t *testing.T, ref string) []byte {
	t.Helper()
	var layer bytes.Buffer
	lw := tar.NewWriter(&layer)
	content := []byte("kbootstrap e2e\n")
	lw.WriteHeader(&tar.Header{Name: "hello.txt", Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg})
	lw.Write(content)
	lw.Close()
	diffID := sha256.Sum256(layer.Bytes())
	config, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Cmd": []string{"/hello"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(diffID[:])}},
	})
	configSum := sha256.Sum256(config)
	configName := hex.EncodeToString(configSum[:]) + ".json"
	manifest, _ := json.Marshal([]map[string]any{{"Config": configName, "RepoTags": []string{ref}, "Layers": []string{"layer.tar"}}})
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for _, f := range []struct {
		name string
		data []byte
	}{{configName, config}, {"layer.tar", layer.Bytes()}, {"manifest.json", manifest}} {
		tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), Typeflag: tar.TypeReg})
		tw.Write(f.data)
	}
	tw.Close()
	return out.Bytes()
}

func TestPlaybookImageImport(t *testing.T) {
	l := labFor(t, playbookSpec)
	// containerd from Debian, started by hand (no systemd in the lab yet);
	// its state is on the node's overlay root, so the native snapshotter.
	labExecIn(t, l, "pb1", `export DEBIAN_FRONTEND=noninteractive
command -v ctr >/dev/null || { apt-get -qq update && apt-get install -y -qq --no-install-recommends containerd >/dev/null; }
if ! ctr version >/dev/null 2>&1; then
  nohup containerd >/var/log/containerd.log 2>&1 &
  i=0; while ! ctr version >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 100 ] || { tail /var/log/containerd.log; exit 1; }; sleep 0.1; done
fi
ctr -n k8s.io images rm registry.k8s.io/kb-e2e:v1 >/dev/null 2>&1; true`)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "images"), 0o755)
	if err := os.WriteFile(filepath.Join(dir, "images", "kb-e2e.tar"), imageTarball(t, "registry.k8s.io/kb-e2e:v1"), 0o644); err != nil {
		t.Fatal(err)
	}
	pb := writeFile(t, dir, "images.yaml", `name: images
hosts: all
tasks:
  - name: images
    image_import: {src: images, snapshotter: native}
`, 0o644)
	for i, want := range []hostStats{{OK: 1, Changed: 1}, {OK: 1}} {
		recap, stderr, code := runPlaybook(t, "-i", l.InventoryFile, pb)
		if code != 0 || recap["pb1"] != want {
			t.Fatalf("run %d: exit %d %+v, want %+v\n%s", i+1, code, recap, want, stderr)
		}
	}
	if got := labExecIn(t, l, "pb1", "ctr -n k8s.io images ls -q"); !strings.Contains(got, "registry.k8s.io/kb-e2e:v1") {
		t.Errorf("image not imported:\n%s", got)
	}
}
