package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kbootstrap/kbootstrap/test/lab"
)

type execRecord struct {
	Node     string `json:"node"`
	ExitCode int    `json:"exitCode"`
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	Error    string `json:"error"`
}

func parseExec(t *testing.T, stdout string) map[string]execRecord {
	t.Helper()
	var recs []execRecord
	if err := json.Unmarshal([]byte(stdout), &recs); err != nil {
		t.Fatalf("exec -o json is not JSON: %v\n%s", err, stdout)
	}
	out := map[string]execRecord{}
	for _, r := range recs {
		out[r.Node] = r
	}
	return out
}

func TestExecAsRoot(t *testing.T) {
	l := sharedLab(t)
	stdout, _, code := kb(t, "exec", "--", "hostname; echo to-stderr >&2")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, n := range l.Nodes {
		if !strings.Contains(stdout, n.Name+": "+n.Name+"\n") {
			t.Errorf("no line %q in:\n%s", n.Name+": "+n.Name, stdout)
		}
	}
	stdout, _, code = kb(t, "-o", "json", "exec", "--", "id -u; exit 0")
	recs := parseExec(t, stdout)
	if code != 0 || len(recs) != len(l.Nodes) {
		t.Fatalf("exit %d, %d records", code, len(recs))
	}
	for _, n := range l.Nodes {
		if r := recs[n.Name]; r.ExitCode != 0 || r.Stdout != "0\n" || r.Error != "" {
			t.Errorf("%s: %+v", n.Name, r)
		}
	}
	// One node's failing command fails the run (exit 2) and keeps the others' results.
	stdout, stderr, code := kb(t, "-o", "json", "exec", "--", `[ "$(hostname)" != cp2 ] || exit 7; echo fine`)
	recs = parseExec(t, stdout)
	if code != 2 || recs["cp2"].ExitCode != 7 || recs["cp1"].Stdout != "fine\n" || recs["cp3"].Stdout != "fine\n" {
		t.Errorf("exit %d records %+v", code, recs)
	}
	if !strings.Contains(stderr, "node cp2:") {
		t.Errorf("stderr does not name cp2: %s", stderr)
	}
	// --host limits the run.
	stdout, _, _ = kb(t, "--host", "cp3", "exec", "--", "hostname")
	if strings.TrimSpace(stdout) != "cp3: cp3" {
		t.Errorf("--host cp3: %q", stdout)
	}
}

func TestExecThroughSudo(t *testing.T) {
	l := sharedLab(t)
	inv := inventoryFor(t, l, l.KnownHostsFile, "vagrant", labNodes(t, l))
	stdout, _, code := kb(t, "-i", inv, "-o", "json", "exec", "--", "id -u")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for name, r := range parseExec(t, stdout) {
		if r.Stdout != "1000\n" {
			t.Errorf("%s: id -u as vagrant = %q", name, r.Stdout)
		}
	}
	stdout, _, code = kb(t, "-i", inv, "-o", "json", "exec", "--sudo", "--", "id -u; cat /etc/shadow >/dev/null && echo read-shadow")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for name, r := range parseExec(t, stdout) {
		if r.Stdout != "0\nread-shadow\n" {
			t.Errorf("%s: through sudo = %q", name, r.Stdout)
		}
	}
	// A user whose sudo wants a password gets a clear error, not a hang.
	labExec(t, "cp1", "mv /etc/sudoers.d/vagrant /root/vagrant.sudoers")
	defer labExec(t, "cp1", "mv /root/vagrant.sudoers /etc/sudoers.d/vagrant")
	_, stderr, code := kb(t, "-i", inv, "--host", "cp1", "exec", "--sudo", "--", "true")
	if code != 2 || !strings.Contains(stderr, "sudo requires a password") {
		t.Errorf("exit %d, stderr %s", code, stderr)
	}
}

// knownHostsWith copies the lab's known_hosts, replacing or dropping the
// lines of some addresses.
func knownHostsWith(t *testing.T, l *lab.Lab, replace map[string]string, drop ...string) string {
	t.Helper()
	data, err := os.ReadFile(l.KnownHostsFile)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		host, _, _ := strings.Cut(line, " ")
		if contains(drop, host) {
			continue
		}
		if key, ok := replace[host]; ok {
			line = host + " " + key
		}
		out = append(out, line)
	}
	return writeFile(t, t.TempDir(), "known_hosts", strings.Join(out, "\n")+"\n", 0o600)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func nodeAddr(t *testing.T, l *lab.Lab, name string) string {
	t.Helper()
	n, ok := l.Node(name)
	if !ok {
		t.Fatalf("no lab node %s", name)
	}
	return n.Addresses[0]
}

func TestChangedHostKeyRefusedOthersSucceed(t *testing.T) {
	l := sharedLab(t)
	cp2 := nodeAddr(t, l, "cp2")
	// cp2's recorded key is not the one it serves: what a rebuilt VM (or a
	// man in the middle) looks like.
	foreign := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGvmQ0Q2Hq6jzq3cK7y8fVq1uD3O8l6b1b6b5nYb0xXa"
	kh := knownHostsWith(t, l, map[string]string{cp2: foreign})
	inv := inventoryFor(t, l, kh, "root", labNodes(t, l))
	for _, accept := range []bool{false, true} {
		args := []string{"-i", inv, "-o", "json", "exec", "--", "hostname"}
		if accept {
			args = append([]string{"--accept-new-host-keys"}, args...)
		}
		stdout, stderr, code := kb(t, args...)
		recs := parseExec(t, stdout)
		if code != 2 {
			t.Errorf("accept=%v: exit %d, want 2", accept, code)
		}
		if recs["cp1"].Stdout != "cp1\n" || recs["cp3"].Stdout != "cp3\n" {
			t.Errorf("accept=%v: other nodes did not succeed: %+v", accept, recs)
		}
		want := fmt.Sprintf("ssh-keygen -f %q -R %q", kh, cp2)
		if !strings.Contains(recs["cp2"].Error, "HOST KEY CHANGED") || !strings.Contains(stderr, want) {
			t.Errorf("accept=%v: cp2 error %q / stderr lacks %q:\n%s", accept, recs["cp2"].Error, want, stderr)
		}
	}
	if data, _ := os.ReadFile(kh); strings.Count(string(data), cp2+" ") != 1 {
		t.Errorf("--accept-new-host-keys touched a changed key's entry:\n%s", data)
	}
}

func TestUnknownHostKeyAcceptedOnlyWhenAsked(t *testing.T) {
	l := sharedLab(t)
	cp3 := nodeAddr(t, l, "cp3")
	kh := knownHostsWith(t, l, nil, cp3)
	inv := inventoryFor(t, l, kh, "root", labNodes(t, l))
	stdout, _, code := kb(t, "-i", inv, "-o", "json", "exec", "--", "hostname")
	recs := parseExec(t, stdout)
	if code != 2 || !strings.Contains(recs["cp3"].Error, "unknown") || recs["cp1"].Stdout != "cp1\n" {
		t.Fatalf("unknown key not refused alone: exit %d %+v", code, recs)
	}
	if _, _, code := kb(t, "-i", inv, "--accept-new-host-keys", "exec", "--", "true"); code != 0 {
		t.Fatalf("--accept-new-host-keys: exit %d", code)
	}
	data, _ := os.ReadFile(kh)
	want, _ := os.ReadFile(l.KnownHostsFile)
	var line string
	for _, l := range strings.Split(string(want), "\n") {
		if strings.HasPrefix(l, cp3+" ") {
			line = l
		}
	}
	if line == "" || !strings.Contains(string(data), line) {
		t.Fatalf("known_hosts lacks cp3's real key %q:\n%s", line, data)
	}
	// Now trusted without the flag.
	if _, _, code := kb(t, "-i", inv, "--host", "cp3", "exec", "--", "true"); code != 0 {
		t.Fatalf("after accepting: exit %d", code)
	}
}

func TestDeadNodeFailsAloneWithinTimeout(t *testing.T) {
	l := sharedLab(t)
	nodes := labNodes(t, l)
	// Nothing answers at this address of the lab's subnet: connects hang
	// until the timeout.
	prefix := nodes[0].Address[:strings.LastIndex(nodes[0].Address, ".")]
	nodes = append(nodes, invNode{Name: "ghost", Address: prefix + ".250", Role: "worker"})
	inv := inventoryFor(t, l, l.KnownHostsFile, "root", nodes)
	const timeout = 4 * time.Second
	r := kbRun(t, nil, "-i", inv, "-o", "json", "--connect-timeout", timeout.String(), "exec", "--", "hostname")
	recs := parseExec(t, r.stdout)
	if r.code != 2 || recs["ghost"].ExitCode != -1 || recs["ghost"].Error == "" {
		t.Fatalf("ghost: exit %d %+v", r.code, recs["ghost"])
	}
	for _, n := range l.Nodes {
		if recs[n.Name].Stdout != n.Name+"\n" {
			t.Errorf("%s did not succeed beside the dead node: %+v", n.Name, recs[n.Name])
		}
	}
	// Bounded, not hanging: the connect timeout plus process start-up.
	if r.took > timeout+10*time.Second {
		t.Errorf("took %v with a %v connect timeout", r.took, timeout)
	}

	// A node whose sshd is down (connection refused) is retried, then fails alone.
	labExec(t, "cp3", "pkill -x sshd; true")
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := l.Stop(ctx, "cp3"); err != nil {
			t.Errorf("stop cp3: %v", err)
		}
		if err := l.Start(ctx, "cp3"); err != nil {
			t.Errorf("start cp3: %v", err)
		}
	}()
	r = kbRun(t, nil, "-o", "json", "--connect-timeout", timeout.String(), "exec", "--", "hostname")
	recs = parseExec(t, r.stdout)
	if r.code != 2 || recs["cp3"].Error == "" || recs["cp1"].Stdout != "cp1\n" {
		t.Errorf("refused node: exit %d %+v", r.code, recs)
	}
	if r.took > timeout+10*time.Second {
		t.Errorf("took %v with a %v connect timeout", r.took, timeout)
	}
}

func TestBadInventoryNamesFileLineField(t *testing.T) {
	inv := writeFile(t, t.TempDir(), "kbootstrap.yaml", "name: x\nnodes:\n  - name: a\n    address: 10.1.1.1\n    role: master\n  - name: b\n    adress: 10.1.1.2\n    role: worker\n", 0o644)
	_, stderr, code := kb(t, "-i", inv, "exec", "--", "true")
	if code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	for _, want := range []string{inv + ":5: nodes[0].role", inv + ":7: nodes[1].adress: unknown field"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

func TestNodesAreSeparate(t *testing.T) {
	sharedLab(t)
	// A package installed on cp1 (from Debian, through the lab's NAT) is absent on cp2.
	_, _, code := kb(t, "--host", "cp1", "exec", "--", "DEBIAN_FRONTEND=noninteractive apt-get -qq update && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hello >/dev/null && hello")
	if code != 0 {
		t.Fatalf("apt-get install on cp1: exit %d", code)
	}
	stdout, _, code := kb(t, "-o", "json", "exec", "--", "dpkg-query -W -f='${Status}' hello 2>/dev/null || echo absent")
	recs := parseExec(t, stdout)
	if code != 0 || !strings.Contains(recs["cp1"].Stdout, "install ok installed") || recs["cp2"].Stdout != "absent\n" || recs["cp3"].Stdout != "absent\n" {
		t.Errorf("package state per node: %+v", recs)
	}
	// Processes and files too.
	labExec(t, "cp1", "echo only-here > /root/marker")
	stdout, _, _ = kb(t, "-o", "json", "exec", "--", "cat /root/marker 2>/dev/null || echo none; ps -e -o comm= | sort -u | tr '\\n' ' '")
	recs = parseExec(t, stdout)
	if !strings.HasPrefix(recs["cp1"].Stdout, "only-here\n") || !strings.HasPrefix(recs["cp2"].Stdout, "none\n") {
		t.Errorf("files leak between nodes: %+v", recs)
	}
}

var bastionSpec = labSpec{
	id: "bst", subnet: "10.81.0.0/24", subnet2: "10.82.0.0/24",
	nodes: []lab.NodeSpec{{Name: "jump", Role: "loadbalancer", Networks: []int{0, 1}}, {Name: "inner", Role: "worker", Networks: []int{1}}},
}

func TestBastionHop(t *testing.T) {
	l := labFor(t, bastionSpec)
	jump, _ := l.Node("jump")
	inner, _ := l.Node("inner")
	innerAddr := inner.Addresses[0]
	if !strings.HasPrefix(innerAddr, "10.82.") {
		t.Fatalf("inner should only be on the second bridge: %v", inner.Addresses)
	}
	bastion := fmt.Sprintf("    ssh:\n      bastion: {address: %s, user: root}\n", jump.Addresses[0])
	inv := inventoryFor(t, l, l.KnownHostsFile, "root", []invNode{{Name: "inner", Address: innerAddr, Role: "worker", Extra: bastion}})
	stdout, _, code := kb(t, "-i", inv, "-o", "json", "exec", "--", "hostname; ip -4 -o addr show scope global | awk '{print $4}'")
	recs := parseExec(t, stdout)
	if code != 0 || !strings.HasPrefix(recs["inner"].Stdout, "inner\n10.82.") {
		t.Fatalf("through the bastion: exit %d %+v", code, recs)
	}
	// Without the bastion the host cannot reach it at all.
	direct := inventoryFor(t, l, l.KnownHostsFile, "root", []invNode{{Name: "inner", Address: innerAddr, Role: "worker"}})
	r := kbRun(t, nil, "-i", direct, "--connect-timeout", "3s", "exec", "--", "hostname")
	if r.code != 2 {
		t.Errorf("inner reachable without the bastion: exit %d", r.code)
	}
}

func TestAtomicWriteSurvivesDroppedConnection(t *testing.T) {
	l := sharedLab(t)
	for _, user := range []string{"root", "vagrant"} {
		t.Run(user, func(t *testing.T) {
			dest := "/etc/kb-atomic-" + user
			labExec(t, "cp1", "echo original > "+dest)
			inv := inventoryFor(t, l, l.KnownHostsFile, user, labNodes(t, l)[:1])
			// The helper binary streams 64 MiB into dest through the node
			// layer; halfway the test kills the node's sshd sessions.
			done := make(chan result, 1)
			go func() {
				done <- kbHelper(t, inv, "write", dest, "67108864")
			}()
			waitFor(t, 30*time.Second, func() bool {
				out := labExecIn(t, l, "cp1", "ls -a /etc | grep -c '^.kb-atomic-"+user+".kbtmp' || true")
				return strings.TrimSpace(out) != "0"
			})
			labExecIn(t, l, "cp1", "pkill -f 'sshd: (root|vagrant)' ; true")
			r := <-done
			if r.code == 0 {
				t.Fatalf("write succeeded despite the dropped connection:\n%s", r.stderr)
			}
			if got := labExecIn(t, l, "cp1", "cat "+dest); got != "original\n" {
				t.Errorf("destination changed by an interrupted write: %q...", got[:min(len(got), 40)])
			}
		})
	}
}

// kbInterrupted starts kbootstrap, waits until ready holds, sends it SIGINT
// (Ctrl-C) and waits for it to exit.
func kbInterrupted(t *testing.T, ready func() bool, args ...string) result {
	t.Helper()
	cmd := exec.Command(kbBinary, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(2 * time.Minute)
	for !ready() {
		select {
		case err := <-done:
			t.Fatalf("kbootstrap %s ended before it could be interrupted (%v):\n%s\n%s", strings.Join(args, " "), err, out.String(), errb.String())
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("kbootstrap %s: never ready to interrupt:\n%s", strings.Join(args, " "), errb.String())
		}
		time.Sleep(300 * time.Millisecond)
	}
	start := time.Now()
	cmd.Process.Signal(os.Interrupt)
	var err error
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		t.Fatalf("kbootstrap %s still runs a minute after SIGINT", strings.Join(args, " "))
	}
	r := result{stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	}
	return r
}

// TestInterruptLeavesNothingRunning: Ctrl-C on kbootstrap ends what it
// started on every node — a root command under sudo (which sshd's signal
// cannot reach), a command of the root user, a playbook task — before
// kbootstrap exits.
func TestInterruptLeavesNothingRunning(t *testing.T) {
	l := sharedLab(t)
	vagrant := inventoryFor(t, l, l.KnownHostsFile, "vagrant", labNodes(t, l))
	book := writeFile(t, t.TempDir(), "sleep.yaml", `name: sleeps
hosts: all
become: true
gather_facts: false
tasks:
  - name: a long task
    shell: {cmd: "sleep 602; echo finished-$((1+1))"}
`, 0o644)
	for _, tc := range []struct {
		name, sleep string
		args        []string
	}{
		{"exec through sudo", "sleep 600", []string{"-i", vagrant, "exec", "--sudo", "--", "sleep 600; echo finished-$((1+1))"}},
		{"exec as root", "sleep 601", []string{"-i", l.InventoryFile, "exec", "--", "sleep 601 & wait"}},
		{"playbook task through sudo", "sleep 602", []string{"-i", vagrant, "playbook", "run", book}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			running := func(n string) bool {
				out, _ := nodeSh(t, l, n, "pgrep -f -x '"+tc.sleep+"' || true")
				return strings.TrimSpace(out) != ""
			}
			r := kbInterrupted(t, func() bool {
				for _, n := range l.Nodes {
					if !running(n.Name) {
						return false
					}
				}
				return true
			}, tc.args...)
			if r.code == 0 || strings.Contains(r.stdout+r.stderr, "finished-2") {
				t.Errorf("interrupted run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
			}
			t.Logf("exit %d %s after SIGINT", r.code, r.took.Round(time.Millisecond))
			for _, n := range l.Nodes {
				if running(n.Name) {
					t.Errorf("%s: %q still runs after kbootstrap exited (%s)", n.Name, tc.sleep, mustSh(t, l, n.Name, "ps -eo pid,pgid,user,args | grep -v grep | grep sleep || true"))
				}
			}
		})
	}
}
