package playbooks

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/node"
)

// localConnector connects every inventory node to this machine.
type localConnector struct{}

func (localConnector) Connect(_ context.Context, n inventory.Node) (node.Node, error) {
	return node.NewLocal(n.Name, nil), nil
}

func testInventory(names ...string) *inventory.Inventory {
	inv := &inventory.Inventory{Name: "test", File: "test-inventory.yaml"}
	for i, n := range names {
		inv.Nodes = append(inv.Nodes, inventory.Node{Name: n, Address: fmt.Sprintf("127.0.0.%d", i+1), Role: inventory.RoleControlPlane})
	}
	return inv
}

// events records what a run reported.
type events struct {
	mu   sync.Mutex
	list []Event
}

func (e *events) Report(ev Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, ev)
}

func (e *events) String() string {
	var b strings.Builder
	for _, ev := range e.list {
		fmt.Fprintf(&b, "%s | %s | %s: %s\n", ev.Host, ev.Status, ev.Task, ev.Msg)
	}
	return b.String()
}

func runYAML(t *testing.T, src string, fsys fs.FS, check bool, hosts ...string) (*Recap, *events, error) {
	t.Helper()
	pb, err := Parse("test.yaml", []byte(src), fsys)
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, src)
	}
	if len(hosts) == 0 {
		hosts = []string{"h1"}
	}
	ev := &events{}
	recap, err := Run(context.Background(), pb, Options{
		Inventory: testInventory(hosts...), Connector: localConnector{}, Concurrency: 4, Check: check, Reporter: ev,
	})
	return recap, ev, err
}

// snapshot lists every path under dir with its type, mode and content hash.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		line := fmt.Sprintf("%s %v", strings.TrimPrefix(p, dir), fi.Mode())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			line += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func TestModulesChangeOnceAndCheckChangesNothing(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the module tests set owners: run as root")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
	local := fstest.MapFS{
		"files/app.conf":     {Data: []byte("from a local file\n"), Mode: 0o644},
		"files/motd.tmpl":    {Data: []byte("{{ .facts.os }} {{ .host.name }} {{ .vars.who }}\n")},
		"bin/tool":           {Data: []byte("#!/bin/sh\necho tool\n"), Mode: 0o755},
		"bin/sub/other.tar":  {Data: []byte("tarball"), Mode: 0o644},
		"keys/secret.pem":    {Data: []byte("PRIVATE"), Mode: 0o600},
		"unused/ignored.txt": {Data: []byte("x")},
	}
	cases := []struct {
		name  string
		setup string // shell run in the temp dir D before the first run
		task  string // one task; D is replaced by the temp dir
		after func(t *testing.T, dir string)
	}{
		{name: "copy content", task: `copy: {dest: D/a.conf, content: "hello {{ .vars.who }}\n", mode: "0640", owner: nobody}`,
			after: func(t *testing.T, dir string) {
				fileIs(t, filepath.Join(dir, "a.conf"), "hello world\n", 0o640)
				if st := statT(t, filepath.Join(dir, "a.conf")); st.UID != 65534 {
					t.Errorf("owner uid %d, want nobody", st.UID)
				}
			}},
		{name: "copy over a different file keeps nothing of it", setup: "printf old > D/b.conf; chmod 600 D/b.conf",
			task:  `copy: {dest: D/b.conf, src: files/app.conf, mode: "0644"}`,
			after: func(t *testing.T, dir string) { fileIs(t, filepath.Join(dir, "b.conf"), "from a local file\n", 0o644) }},
		{name: "copy fixes only a mode", setup: "printf 'same\\n' > D/m.conf; chmod 600 D/m.conf",
			task:  `copy: {dest: D/m.conf, content: "same\n", mode: "0644"}`,
			after: func(t *testing.T, dir string) { fileIs(t, filepath.Join(dir, "m.conf"), "same\n", 0o644) }},
		{name: "copy of empty content", task: `copy: {dest: D/empty, content: ""}`,
			after: func(t *testing.T, dir string) { fileIs(t, filepath.Join(dir, "empty"), "", 0o644) }},
		{name: "template", task: `template: {src: files/motd.tmpl, dest: D/motd}`,
			after: func(t *testing.T, dir string) {
				b, _ := os.ReadFile(filepath.Join(dir, "motd"))
				if !strings.HasSuffix(string(b), " h1 world\n") {
					t.Errorf("motd = %q", b)
				}
			}},
		{name: "file directory", task: `file: {path: D/x/y, state: directory, mode: "0750"}`,
			after: func(t *testing.T, dir string) {
				if st := statT(t, filepath.Join(dir, "x/y")); !st.IsDir() || st.Mode.Perm() != 0o750 {
					t.Errorf("x/y: %v", st.Mode)
				}
			}},
		{name: "file link", task: `file: {path: D/link, state: link, src: /etc/hostname}`,
			after: func(t *testing.T, dir string) {
				if target, _ := os.Readlink(filepath.Join(dir, "link")); target != "/etc/hostname" {
					t.Errorf("link -> %q", target)
				}
			}},
		{name: "file touch", task: `file: {path: D/touched, state: touch, mode: "0600"}`,
			after: func(t *testing.T, dir string) { fileIs(t, filepath.Join(dir, "touched"), "", 0o600) }},
		{name: "file absent", setup: "mkdir -p D/gone/deep && touch D/gone/deep/f",
			task: `file: {path: D/gone, state: absent}`,
			after: func(t *testing.T, dir string) {
				if _, err := os.Lstat(filepath.Join(dir, "gone")); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("gone still there: %v", err)
				}
			}},
		{name: "file mode", setup: "touch D/f; chmod 644 D/f", task: `file: {path: D/f, mode: "0400"}`,
			after: func(t *testing.T, dir string) { fileIs(t, filepath.Join(dir, "f"), "", 0o400) }},
		{name: "lineinfile create", task: `lineinfile: {path: D/l, line: "answer=42", regexp: "^answer=", create: true}`,
			after: func(t *testing.T, dir string) { fileIs(t, filepath.Join(dir, "l"), "answer=42\n", 0o644) }},
		{name: "lineinfile replace", setup: "printf 'a=1\\nanswer=7\\nb=2\\n' > D/l",
			task:  `lineinfile: {path: D/l, line: "answer=42", regexp: "^answer="}`,
			after: func(t *testing.T, dir string) { fileIs(t, filepath.Join(dir, "l"), "a=1\nanswer=42\nb=2\n", 0o644) }},
		{name: "lineinfile insertafter", setup: "printf '[a]\\nx=1\\n[b]\\ny=2\\n' > D/l",
			task:  `lineinfile: {path: D/l, line: "z=3", insertafter: '^\[a\]'}`,
			after: func(t *testing.T, dir string) { fileIs(t, filepath.Join(dir, "l"), "[a]\nz=3\nx=1\n[b]\ny=2\n", 0o644) }},
		{name: "lineinfile absent", setup: "printf 'keep\\n#swap\\n/swapfile none swap sw 0 0\\n' > D/fstab",
			task:  `lineinfile: {path: D/fstab, regexp: '\sswap\s', state: absent}`,
			after: func(t *testing.T, dir string) { fileIs(t, filepath.Join(dir, "fstab"), "keep\n#swap\n", 0o644) }},
		{name: "sysctl drop-in", setup: "printf '# mine\\nnet.ipv4.ip_forward = 0\\nvm.swappiness=60\\n' > D/99.conf",
			task: `sysctl: {name: net.ipv4.ip_forward, value: "1", sysctl_file: D/99.conf, reload: false}`,
			after: func(t *testing.T, dir string) {
				fileIs(t, filepath.Join(dir, "99.conf"), "# mine\nnet.ipv4.ip_forward = 1\nvm.swappiness=60\n", 0o644)
			}},
		{name: "sysctl new drop-in", task: `sysctl: {name: net.bridge.bridge-nf-call-iptables, value: "1", sysctl_file: D/sysctl.d/k8s.conf, reload: false}`,
			after: func(t *testing.T, dir string) {
				fileIs(t, filepath.Join(dir, "sysctl.d/k8s.conf"), "net.bridge.bridge-nf-call-iptables = 1\n", 0o644)
			}},
		{name: "shell creates", task: `shell: {cmd: "echo made > D/made", creates: D/made}`,
			after: func(t *testing.T, dir string) { fileIs(t, filepath.Join(dir, "made"), "made\n", 0o644) }},
		{name: "shell unless", task: `shell: {cmd: "echo x >> D/u", unless: "grep -q x D/u", chdir: D, environment: {GREETING: hi}}`,
			after: func(t *testing.T, dir string) { fileIs(t, filepath.Join(dir, "u"), "x\n", 0o644) }},
		{name: "shell removes", setup: "touch D/flag", task: `shell: {cmd: "rm D/flag", removes: D/flag}`,
			after: func(t *testing.T, dir string) {
				if _, err := os.Stat(filepath.Join(dir, "flag")); err == nil {
					t.Error("flag still there")
				}
			}},
		{name: "command argv", task: `command: {argv: [touch, "D/with space"], creates: "D/with space"}`,
			after: func(t *testing.T, dir string) { fileIs(t, filepath.Join(dir, "with space"), "", 0o644) }},
		{name: "upload", task: `upload: {src: bin, dest: D/opt/bin}`,
			after: func(t *testing.T, dir string) {
				fileIs(t, filepath.Join(dir, "opt/bin/tool"), "#!/bin/sh\necho tool\n", 0o755)
				fileIs(t, filepath.Join(dir, "opt/bin/sub/other.tar"), "tarball", 0o644)
			}},
		{name: "upload fixes a mode", setup: "mkdir -p D/o && printf '#!/bin/sh\\necho tool\\n' > D/o/tool && chmod 644 D/o/tool",
			task: `upload: {src: bin/tool, dest: D/o}`,
			after: func(t *testing.T, dir string) {
				fileIs(t, filepath.Join(dir, "o/tool"), "#!/bin/sh\necho tool\n", 0o755)
			}},
		{name: "fetch", setup: "mkdir -p D/remote && printf 'kubeconfig' > D/remote/admin.conf",
			task: `fetch: {src: D/remote/admin.conf, dest: D/fetched/}`,
			after: func(t *testing.T, dir string) {
				fileIs(t, filepath.Join(dir, "fetched/h1", dir, "remote/admin.conf"), "kubeconfig", 0o600)
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if c.setup != "" {
				if out, err := node.NewLocal("setup", nil).Run(context.Background(), strings.ReplaceAll(c.setup, "D", dir)); err != nil {
					t.Fatalf("setup: %v %s", err, out.Stderr)
				}
			}
			play := "name: t\nhosts: all\nvars: {who: world}\ntasks:\n  - name: the task\n    " + strings.ReplaceAll(c.task, "D/", dir+"/") + "\n"
			play = strings.ReplaceAll(play, "chdir: D,", "chdir: "+dir+",")
			before := snapshot(t, dir)
			recap, ev, err := runYAML(t, play, local, true)
			if err != nil || recap.Hosts["h1"].Changed != 1 {
				t.Fatalf("check run: %v %+v\n%s", err, recap.Hosts["h1"], ev)
			}
			if after := snapshot(t, dir); after != before {
				t.Fatalf("--check changed the disk:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			recap, ev, err = runYAML(t, play, local, false)
			if err != nil || recap.Hosts["h1"].Changed != 1 {
				t.Fatalf("first run: %v %+v\n%s", err, recap.Hosts["h1"], ev)
			}
			c.after(t, dir)
			for _, check := range []bool{false, true} {
				recap, ev, err = runYAML(t, play, local, check)
				if err != nil || *recap.Hosts["h1"] != (HostStats{OK: 1}) {
					t.Fatalf("second run (check %v): %v %+v\n%s", check, err, recap.Hosts["h1"], ev)
				}
			}
			// No temporary file is left behind.
			if s := snapshot(t, dir); strings.Contains(s, ".kbtmp") {
				t.Errorf("temporary files left:\n%s", s)
			}
		})
	}
	t.Run("wait_for", func(t *testing.T) {
		dir := t.TempDir()
		play := fmt.Sprintf("name: t\nhosts: all\ntasks:\n  - name: port\n    wait_for: {port: %q, timeout: 5s}\n  - name: path\n    wait_for: {path: %s, timeout: 5s}\n", port, dir)
		recap, ev, err := runYAML(t, play, nil, false)
		if err != nil || *recap.Hosts["h1"] != (HostStats{OK: 2}) {
			t.Fatalf("%v %+v\n%s", err, recap.Hosts["h1"], ev)
		}
		play = "name: t\nhosts: all\ntasks:\n  - name: nothing listens\n    wait_for: {port: \"1\", timeout: 600ms}\n"
		recap, _, err = runYAML(t, play, nil, false)
		if err == nil || recap.Hosts["h1"].Failed != 1 || !strings.Contains(err.Error(), "did not accept a connection") {
			t.Fatalf("closed port: %v %+v", err, recap.Hosts["h1"])
		}
	})
}

func fileIs(t *testing.T, p, content string, mode fs.FileMode) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Error(err)
		return
	}
	if string(b) != content {
		t.Errorf("%s = %q, want %q", p, b, content)
	}
	if st := statT(t, p); st.Mode.Perm() != mode {
		t.Errorf("%s mode %v, want %v", p, st.Mode.Perm(), mode)
	}
}

func statT(t *testing.T, p string) node.FileInfo {
	t.Helper()
	st, err := node.NewLocal("x", nil).Stat(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestFailingHostStopsAloneAndNamesTask(t *testing.T) {
	dir := t.TempDir()
	play := `name: t
hosts: all
tasks:
  - name: first
    shell: 'touch ` + dir + `/first-{{ .host.name }}'
  - name: breaks on h2
    shell: '[ {{ .host.name }} != h2 ] || { echo boom >&2; exit 3; }'
  - name: last
    shell: 'touch ` + dir + `/last-{{ .host.name }}'
`
	recap, ev, err := runYAML(t, play, nil, false, "h1", "h2", "h3")
	if err == nil {
		t.Fatalf("no error\n%s", ev)
	}
	nes := node.NodeErrors(err)
	if len(nes) != 1 || nes[0].Node != "h2" {
		t.Fatalf("node errors %v", err)
	}
	var te *TaskError
	if !errors.As(err, &te) || te.Line != 6 || te.Task != "breaks on h2" || te.File != "test.yaml" {
		t.Errorf("task error %+v", te)
	}
	if want := `test.yaml:6: task "breaks on h2": exit status 3: boom`; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q lacks %q", err, want)
	}
	for _, h := range []string{"h1", "h3"} {
		if _, err := os.Stat(filepath.Join(dir, "last-"+h)); err != nil {
			t.Errorf("%s did not go on: %v", h, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "last-h2")); err == nil {
		t.Error("h2 went on after failing")
	}
	if got := *recap.Hosts["h2"]; got != (HostStats{OK: 1, Changed: 1, Failed: 1}) {
		t.Errorf("h2 recap %+v", got)
	}
	if got := *recap.Hosts["h1"]; got != (HostStats{OK: 3, Changed: 3}) {
		t.Errorf("h1 recap %+v", got)
	}

	// any_errors_fatal stops everyone after that task.
	dir2 := t.TempDir()
	play = strings.Replace(play, "hosts: all\n", "hosts: all\nany_errors_fatal: true\n", 1)
	play = strings.ReplaceAll(play, dir, dir2)
	_, _, err = runYAML(t, play, nil, false, "h1", "h2", "h3")
	if err == nil {
		t.Fatal("no error with any_errors_fatal")
	}
	if entries, _ := os.ReadDir(dir2); len(entries) != 3 {
		t.Errorf("any_errors_fatal: files %v, want only first-*", entries)
	}

	// ignore_errors lets the host go on and is not a failure.
	play = "name: t\nhosts: all\ntasks:\n  - name: fails\n    shell: exit 1\n    ignore_errors: true\n  - name: then\n    debug: {msg: on}\n"
	recap, _, err = runYAML(t, play, nil, false)
	if err != nil || *recap.Hosts["h1"] != (HostStats{OK: 1, Ignored: 1}) {
		t.Errorf("ignore_errors: %v %+v", err, recap.Hosts["h1"])
	}
}

func TestRegisterWhenHandlersSerial(t *testing.T) {
	dir := t.TempDir()
	play := `name: t
hosts: [h1, h3]
serial: 1
vars: {flag: "yes"}
tasks:
  - name: probe
    shell: echo found
    register: probe
    changed_when: "false"
  - name: uses the result
    copy: {dest: "` + dir + `/{{ .host.name }}", content: "{{ .registered.probe.stdout }} rc={{ .registered.probe.rc }}\n"}
    when: 'eq .registered.probe.stdout "found"'
    notify: [h]
  - name: skipped
    shell: exit 1
    when: '{{ eq .vars.flag "no" }}'
handlers:
  - name: h
    shell: 'echo {{ .host.name }} >> ` + dir + `/handled'
`
	recap, ev, err := runYAML(t, play, nil, false, "h1", "h2", "h3")
	if err != nil {
		t.Fatal(err, ev)
	}
	if _, ok := recap.Hosts["h2"]; ok {
		t.Error("h2 is not in hosts but ran")
	}
	if got := *recap.Hosts["h1"]; got != (HostStats{OK: 3, Changed: 2, Skipped: 1}) {
		t.Errorf("h1 %+v\n%s", got, ev)
	}
	fileIs(t, filepath.Join(dir, "h3"), "found rc=0\n", 0o644)
	// serial: 1 runs h1's whole play (handlers included) before h3's.
	fileIs(t, filepath.Join(dir, "handled"), "h1\nh3\n", 0o644)
	var order []string
	for _, e := range ev.list {
		order = append(order, e.Host)
	}
	if got := strings.Join(order, ","); got != "h1,h1,h1,h1,h1,h3,h3,h3,h3,h3" {
		t.Errorf("event order %s", got)
	}
	// Second run: nothing changes, so the handler does not run.
	recap, _, _ = runYAML(t, play, nil, false, "h1", "h2", "h3")
	if got := *recap.Hosts["h1"]; got != (HostStats{OK: 2, Skipped: 1}) {
		t.Errorf("second run h1 %+v", got)
	}
	fileIs(t, filepath.Join(dir, "handled"), "h1\nh3\n", 0o644)
}

func TestSecretVarsAreRedacted(t *testing.T) {
	play := `name: t
hosts: all
vars: {token: abcdef.0123456789abcdef}
secret_vars: [token]
tasks:
  - name: uses the token
    shell: 'echo "joining with {{ .vars.token }}"; echo "bad {{ .vars.token }}" >&2; exit 1'
`
	_, ev, err := runYAML(t, play, nil, false)
	if err == nil {
		t.Fatal("want a failure")
	}
	for _, s := range []string{ev.String(), err.Error()} {
		if strings.Contains(s, "0123456789abcdef") || !strings.Contains(s, node.Redacted) {
			t.Errorf("secret not redacted: %s", s)
		}
	}
}

func TestParseErrorsNameFileLineTask(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"unknown task key", "name: p\nhosts: all\ntasks:\n  - name: a\n    shell: true\n    wen: x\n", `p.yaml:6: task "a": unknown key "wen"`},
		{"unknown module argument", "name: p\nhosts: all\ntasks:\n  - name: cfg\n    copy:\n      dest: /x\n      content: y\n      mdoe: \"0644\"\n", `p.yaml:8: task "cfg": copy: unknown argument "mdoe"`},
		{"two modules", "name: p\nhosts: all\ntasks:\n  - name: a\n    shell: x\n    command: y\n", `p.yaml:6: task "a": more than one module`},
		{"no module", "name: p\nhosts: all\ntasks:\n  - name: lonely\n    when: x\n", `p.yaml:4: task "lonely": no module`},
		{"missing name", "name: p\nhosts: all\ntasks:\n  - shell: x\n", `p.yaml:4: task "tasks[0]": name: missing`},
		{"bad mode", "name: p\nhosts: all\ntasks:\n  - name: m\n    file: {path: /x, mode: 999}\n", `p.yaml:5: task "m": file: mode "999"`},
		{"bad value type", "name: p\nhosts: all\ntasks:\n  - name: t\n    lineinfile:\n      path: /x\n      line: y\n      create: [1]\n", `p.yaml:8: task "t": lineinfile: cannot unmarshal seq into bool`},
		{"missing argument", "name: p\nhosts: all\ntasks:\n  - name: c\n    copy: {content: x}\n", `p.yaml:5: task "c": copy: dest: missing`},
		{"bad when", "name: p\nhosts: all\ntasks:\n  - name: w\n    shell: x\n    when: '{{ eq .a }'\n", `p.yaml:6: task "w": when:`},
		{"unknown handler", "name: p\nhosts: all\ntasks:\n  - name: n\n    shell: x\n    notify: nobody\n", `p.yaml:4: task "n": notify: no handler is named "nobody"`},
		{"unknown play key", "name: p\nhosts: all\nsrial: 1\ntasks: []\n", `p.yaml:3: unknown key "srial"`},
		{"missing hosts", "name: p\ntasks: []\n", `p.yaml:1: hosts: missing`},
		{"yaml syntax", "name: p\nhosts: all\ntasks:\n  - name: a\n   shell: x\n", `p.yaml:3: yaml: line 3: did not find expected`},
		{"bad state", "name: p\nhosts: all\ntasks:\n  - name: s\n    file: {path: /x, state: dir}\n", `p.yaml:5: task "s": file: state "dir"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(c.yaml), nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want %q", err, c.want)
			}
		})
	}
}

func TestShippedPlaybooksParse(t *testing.T) {
	list, err := List()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range list {
		names = append(names, i.Name)
		if i.Description == "" {
			t.Errorf("%s has no description", i.Name)
		}
	}
	for _, want := range []string{"example", "prepare-node", "loadbalancer"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("%s is not shipped: %v", want, names)
		}
	}
	if _, err := Load("no-such-playbook"); err == nil || !strings.Contains(err.Error(), "neither a file nor a shipped playbook") {
		t.Errorf("unknown name: %v", err)
	}
}

func TestLoadbalancerTemplateListsControlPlanes(t *testing.T) {
	pb, err := Shipped("loadbalancer")
	if err != nil {
		t.Fatal(err)
	}
	inv := testInventory("cp1", "cp2")
	inv.Nodes = append(inv.Nodes, inventory.Node{Name: "lb", Address: "10.0.0.9", Role: inventory.RoleLoadBalancer})
	tmpl, err := fs.ReadFile(pb.FS, "haproxy.cfg.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	out, err := render("haproxy", string(tmpl), map[string]any{"vars": pb.Vars, "inventory": inventoryData(inv)})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"bind *:6443", "server cp1 127.0.0.1:6443 check", "server cp2 127.0.0.2:6443 check", "option httpchk GET /readyz", "check-ssl verify none", "on-marked-down shutdown-sessions", "option redispatch 1", "stats socket /run/haproxy-kbootstrap.sock mode 600 level admin"} {
		if !strings.Contains(out, want) {
			t.Errorf("haproxy.cfg lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "server lb") {
		t.Errorf("the load balancer balances to itself:\n%s", out)
	}
}

func TestSplitWords(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{`kubeadm reset -f`, []string{"kubeadm", "reset", "-f"}},
		{`echo 'a b' "c \"d\"" e\ f`, []string{"echo", "a b", `c "d"`, "e f"}},
		{`echo $HOME | cat`, []string{"echo", "$HOME", "|", "cat"}},
	}
	for _, c := range cases {
		got, err := splitWords(c.in)
		if err != nil || strings.Join(got, "\x00") != strings.Join(c.want, "\x00") {
			t.Errorf("splitWords(%q) = %q, %v", c.in, got, err)
		}
	}
	if _, err := splitWords(`echo 'open`); err == nil {
		t.Error("unterminated quote accepted")
	}
}

func TestNormalizeRef(t *testing.T) {
	for in, want := range map[string]string{
		"busybox":                        "docker.io/library/busybox:latest",
		"busybox:1.36":                   "docker.io/library/busybox:1.36",
		"me/app":                         "docker.io/me/app:latest",
		"registry.k8s.io/pause:3.10":     "registry.k8s.io/pause:3.10",
		"localhost:5000/x":               "localhost:5000/x:latest",
		"registry.k8s.io/etcd@sha256:ab": "registry.k8s.io/etcd@sha256:ab",
	} {
		if got := normalizeRef(in); got != want {
			t.Errorf("normalizeRef(%q) = %q, want %q", in, got, want)
		}
	}
}
