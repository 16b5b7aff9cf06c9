package lab

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The lab tests need root, util-linux, iproute2, iptables, openssh-client and (the first time, to
// build the rootfs) debootstrap and network access to the Debian mirror. Run them alone with
//
//	cd test && go test -count=1 -run 'TestLab' -v ./lab/
//
// Each test uses its own lab ID and subnets, so they run in parallel with each other and with other
// packages' labs.

func requireLab(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("lab test skipped in -short mode (it boots namespaced Debian nodes)")
	}
	if os.Geteuid() != 0 {
		t.Skip("lab test skipped: it needs root (network namespaces, bridges, mounts); run go test as root")
	}
	for _, bin := range []string{"unshare", "nsenter", "ip", "iptables", "ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("lab test skipped: %s is not installed (apt-get install util-linux iproute2 iptables openssh-client)", bin)
		}
	}
	if !isDir(filepath.Join(cacheDir(), RootfsName())) {
		if _, err := exec.LookPath("debootstrap"); err != nil {
			t.Skipf("lab test skipped: the rootfs %s is not cached and debootstrap is not installed (apt-get install debootstrap)",
				filepath.Join(cacheDir(), RootfsName()))
		}
	}
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// up brings a lab up and registers its Down (a no-op when the test already took it down).
func up(t *testing.T, cfg Config) *Lab {
	t.Helper()
	cfg.Log = testLog{t}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := Down(ctx, cfg.Dir, cfg.ID); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	l, err := Up(ctx, cfg)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	return l
}

func sshArgs(l *Lab, user, addr string) []string {
	return []string{"-i", l.KeyFile, "-o", "UserKnownHostsFile=" + l.KnownHostsFile,
		"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
		"-o", "ConnectTimeout=5", user + "@" + addr}
}

// ssh runs a command on addr as user and returns its trimmed output.
func ssh(t *testing.T, l *Lab, user, addr, command string, extra ...string) (string, error) {
	t.Helper()
	args := append(append(extra, sshArgs(l, user, addr)...), command)
	out, err := exec.Command("ssh", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func mustSSH(t *testing.T, l *Lab, user, addr, command string, extra ...string) string {
	t.Helper()
	out, err := ssh(t, l, user, addr, command, extra...)
	if err != nil {
		t.Fatalf("ssh %s@%s %q: %v: %s", user, addr, command, err, out)
	}
	return out
}

func mustExec(t *testing.T, l *Lab, node string, args ...string) string {
	t.Helper()
	out, err := l.Exec(context.Background(), node, args...)
	if err != nil {
		t.Fatalf("Exec %s %q: %v", node, args, err)
	}
	return strings.TrimSpace(string(out))
}

func addr(t *testing.T, l *Lab, name string, i int) string {
	t.Helper()
	n, ok := l.Node(name)
	if !ok || len(n.Addresses) <= i {
		t.Fatalf("node %s: no address %d in %+v", name, i, l.Nodes)
	}
	return n.Addresses[i]
}

// sshReachable reports whether an sshd answers on address:22 from the host. It reads the banner:
// on some machines (this CI's VMs) the upstream network accepts TCP connections to any address.
func sshReachable(address string) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort(address, "22"), 1500*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
	b := make([]byte, 4)
	_, err = io.ReadFull(c, b)
	return err == nil && string(b) == "SSH-"
}

// running reports whether pid is a live (not zombie) process named comm.
func running(pid int, comm string) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndex(s, ")")
	return i > 0 && strings.Contains(s[:i], "("+comm) && len(s) > i+2 && s[i+2] != 'Z'
}

func TestLabLifecycle(t *testing.T) {
	requireLab(t)
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "lab")
	art := t.TempDir()
	if err := os.WriteFile(filepath.Join(art, "kubeadm"), []byte("#!/bin/sh\necho fake kubeadm\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	l := up(t, Config{ID: "tlife", Dir: dir, Subnet: "10.97.1.0/24", Subnet2: "10.97.2.0/24", ArtifactsDir: art,
		Nodes: []NodeSpec{
			{Name: "n1", Role: RoleControlPlane},
			{Name: "n2", Role: RoleWorker, Networks: []int{0, 1}},
			{Name: "n3", Role: RoleWorker, Networks: []int{1}},
		}})
	n1, n2, n3 := addr(t, l, "n1", 0), addr(t, l, "n2", 0), addr(t, l, "n3", 0)
	if n1 != "10.97.1.11" || n2 != "10.97.1.12" || addr(t, l, "n2", 1) != "10.97.2.12" || n3 != "10.97.2.13" {
		t.Fatalf("addresses: %+v", l.Nodes)
	}

	t.Run("files", func(t *testing.T) {
		inv, err := os.ReadFile(l.InventoryFile)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"name: tlife\n", "kubernetesVersion: v1.34.4\n", "user: root\n",
			`keyFile: "` + l.KeyFile + `"`, `knownHostsFile: "` + l.KnownHostsFile + `"`,
			"  - name: n3\n    address: 10.97.2.13\n    internalAddress: 10.97.2.13\n    role: worker\n"} {
			if !strings.Contains(string(inv), want) {
				t.Errorf("inventory lacks %q:\n%s", want, inv)
			}
		}
		kh, err := os.ReadFile(l.KnownHostsFile)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range []string{n1, n2, "10.97.2.12", n3} {
			if !strings.Contains(string(kh), a+" ssh-ed25519 AAAA") {
				t.Errorf("known_hosts lacks %s:\n%s", a, kh)
			}
		}
		m, err := Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Nodes) != 3 || m.Nodes[0].HostPID != l.Nodes[0].HostPID || m.Config.ID != "tlife" {
			t.Errorf("Load: %+v, want %+v", m.Nodes, l.Nodes)
		}
		for _, n := range l.Nodes {
			if !running(n.HostPID, "tini") {
				t.Errorf("node %s: HostPID %d is not a running tini", n.Name, n.HostPID)
			}
		}
	})

	t.Run("ssh as root and vagrant", func(t *testing.T) {
		for _, a := range []string{n1, n2} {
			if got := mustSSH(t, l, "root", a, "id -u"); got != "0" {
				t.Errorf("root@%s: id -u = %q", a, got)
			}
			if got := mustSSH(t, l, "vagrant", a, "id -un; id -u; sudo -n id -u"); got != "vagrant\n1000\n0" {
				t.Errorf("vagrant@%s: %q, want vagrant, 1000 and 0 with sudo -n", a, got)
			}
		}
	})

	t.Run("nodes are separate machines", func(t *testing.T) {
		if h1, h2 := mustSSH(t, l, "root", n1, "hostname"), mustSSH(t, l, "root", n2, "hostname"); h1 != "n1" || h2 != "n2" {
			t.Errorf("hostnames %q %q, want n1 n2", h1, h2)
		}
		mustSSH(t, l, "root", n1, "echo hello > /root/only-on-n1 && touch /tmp/scratch")
		if out, err := ssh(t, l, "root", n2, "ls /root/only-on-n1"); err == nil {
			t.Errorf("a file written on n1 is visible on n2: %s", out)
		}
		ps := mustExec(t, l, "n1", "ps", "-e", "-o", "pid=,comm=")
		lines := strings.Split(ps, "\n")
		if f := strings.Fields(lines[0]); len(f) != 2 || f[0] != "1" || f[1] != "tini" {
			t.Errorf("PID 1 inside n1 is %q, want tini:\n%s", lines[0], ps)
		}
		if len(lines) > 10 || strings.Contains(ps, "lab.test") || strings.Contains(ps, "unshare") {
			t.Errorf("ps inside n1 shows processes that are not n1's:\n%s", ps)
		}
		if mounts := mustExec(t, l, "n1", "cat", "/proc/self/mountinfo"); strings.Contains(mounts, "kblab-tlife-n2") {
			t.Errorf("n1 sees n2's mounts:\n%s", mounts)
		}
	})

	t.Run("apt works inside a node and stays there", func(t *testing.T) {
		if out, err := l.Exec(context.Background(), "n1", "apt-get", "install", "-y", "-q", "jq"); err != nil {
			t.Fatalf("apt-get install jq on n1: %v\n%s", err, out)
		}
		mustSSH(t, l, "root", n1, "jq --version")
		if out, err := ssh(t, l, "root", n2, "command -v jq"); err == nil {
			t.Errorf("jq installed on n1 is present on n2: %s", out)
		}
	})

	t.Run("artifacts are mounted read-only", func(t *testing.T) {
		if got := mustSSH(t, l, "root", n1, "/opt/kbootstrap/bin/kubeadm"); got != "fake kubeadm" {
			t.Errorf("kubeadm from artifacts: %q", got)
		}
		if out, err := ssh(t, l, "root", n1, "touch /opt/kbootstrap/bin/x"); err == nil || !strings.Contains(out, "Read-only") {
			t.Errorf("artifacts are writable: %v %s", err, out)
		}
	})

	t.Run("second bridge via bastion only", func(t *testing.T) {
		if sshReachable(n3) {
			t.Errorf("the host reaches %s, which is only on the second bridge", n3)
		}
		proxy := "ProxyCommand=ssh " + strings.Join(sshArgs(l, "root", n2)[:len(sshArgs(l, "root", n2))-1], " ") +
			" -W %h:%p root@" + n2
		if got := mustSSH(t, l, "root", n3, "hostname", "-o", proxy); got != "n3" {
			t.Errorf("n3 through bastion n2: hostname %q", got)
		}
		if got := mustSSH(t, l, "vagrant", n3, "sudo -n hostname", "-o", proxy); got != "n3" {
			t.Errorf("vagrant on n3 through bastion n2: %q", got)
		}
	})

	t.Run("partition and heal", func(t *testing.T) {
		ctx := context.Background()
		if err := l.Partition(ctx, "n1"); err != nil {
			t.Fatal(err)
		}
		if sshReachable(n1) {
			t.Errorf("n1 reachable while partitioned")
		}
		if got := mustExec(t, l, "n1", "hostname"); got != "n1" {
			t.Errorf("n1 not running while partitioned: %q", got)
		}
		if err := l.Heal(ctx, "n1"); err != nil {
			t.Fatal(err)
		}
		mustSSH(t, l, "root", n1, "true")
	})

	t.Run("stop and start keep disk, key and address", func(t *testing.T) {
		ctx := context.Background()
		old, _ := l.Node("n1")
		if err := l.Stop(ctx, "n1"); err != nil {
			t.Fatal(err)
		}
		if n, _ := l.Node("n1"); n.HostPID != 0 {
			t.Errorf("HostPID after Stop = %d", n.HostPID)
		}
		if running(old.HostPID, "tini") {
			t.Errorf("n1's tini %d still runs after Stop", old.HostPID)
		}
		if sshReachable(n1) {
			t.Errorf("n1 reachable after Stop")
		}
		if _, err := l.Exec(ctx, "n1", "true"); err == nil {
			t.Errorf("Exec on a stopped node succeeded")
		}
		if err := l.Start(ctx, "n1"); err != nil {
			t.Fatal(err)
		}
		// StrictHostKeyChecking=yes with the same known_hosts: same key, same address.
		if got := mustSSH(t, l, "root", n1, "cat /root/only-on-n1; ls /tmp"); got != "hello" {
			t.Errorf("after Start: %q, want the file kept on disk and a fresh /tmp", got)
		}
		mustSSH(t, l, "root", n1, "jq --version")
	})

	t.Run("sshd death shows on the console", func(t *testing.T) {
		mustExec(t, l, "n2", "sh", "-c", "kill $(cat /run/sshd.pid)")
		console := filepath.Join(dir, "nodes", "n2", "console.log")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := poll(ctx, 20*time.Millisecond, func() (bool, error) {
			b, _ := os.ReadFile(console)
			return strings.Contains(string(b), "SSHD DIED"), nil
		})
		if err != nil {
			t.Errorf("no SSHD DIED line in %s:\n%s", console, tail(console, 10))
		}
		if sshReachable(n2) {
			t.Errorf("sshd still answers on n2")
		}
		// sshd daemonizes before it listens: wait for it.
		mustExec(t, l, "n2", "/usr/sbin/sshd")
		if err := poll(ctx, 20*time.Millisecond, func() (bool, error) { return sshReachable(n2), nil }); err != nil {
			t.Fatalf("restarted sshd on n2 does not answer: %v", err)
		}
		mustSSH(t, l, "root", n2, "true")
	})

	t.Run("up again keeps running nodes", func(t *testing.T) {
		before, _ := l.Node("n2")
		m, err := Up(context.Background(), Config{ID: "tlife", Dir: dir, Subnet: "10.97.1.0/24", Subnet2: "10.97.2.0/24",
			Log: testLog{t}, Nodes: []NodeSpec{{Name: "n2", Role: RoleWorker, Networks: []int{0, 1}}}})
		if err != nil {
			t.Fatal(err)
		}
		if after, _ := m.Node("n2"); after.HostPID != before.HostPID || len(m.Nodes) != 3 {
			t.Errorf("Up again: %+v, want n2 still at PID %d and 3 nodes", m.Nodes, before.HostPID)
		}
	})

	if err := l.Down(context.Background()); err != nil {
		t.Fatalf("Down: %v", err)
	}
	assertGone(t, "tlife", dir)
}

func TestLabDownAfterCrash(t *testing.T) {
	requireLab(t)
	t.Parallel()
	// A bystander lab that must survive the other lab's Down.
	by := up(t, Config{ID: "tby", Dir: filepath.Join(t.TempDir(), "lab"), Subnet: "10.97.5.0/24", Subnet2: "10.97.6.0/24",
		Nodes: []NodeSpec{{Name: "n1", Networks: []int{0, 1}}}})

	dir := filepath.Join(t.TempDir(), "lab")
	l := up(t, Config{ID: "tcrsh", Dir: dir, Subnet: "10.97.3.0/24", Subnet2: "10.97.4.0/24",
		Nodes: []NodeSpec{
			{Name: "n1", Role: RoleControlPlane},
			{Name: "n2", Role: RoleWorker, Networks: []int{0, 1}},
			{Name: "n3", Role: RoleWorker, Networks: []int{1}},
		}})
	mustSSH(t, l, "root", addr(t, l, "n1", 0), "sleep 1000 </dev/null >/dev/null 2>&1 &")
	if err := l.Partition(context.Background(), "n2"); err != nil {
		t.Fatal(err)
	}
	left, err := Leftovers(context.Background(), dir, "tcrsh")
	if err != nil || len(left) < 10 {
		t.Fatalf("Leftovers of a running lab: %v %q", err, left)
	}

	// The crash: the process that ran Up is gone and so is the state it wrote.
	for _, f := range []string{stateFile, "kbootstrap.yaml"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	if err := Down(context.Background(), dir, "tcrsh"); err != nil {
		t.Fatalf("Down after crash: %v", err)
	}
	assertGone(t, "tcrsh", dir)

	// The bystander is untouched.
	if got := mustSSH(t, by, "root", addr(t, by, "n1", 0), "hostname"); got != "n1" {
		t.Errorf("bystander lab: %q", got)
	}
	if left, _ := Leftovers(context.Background(), "", "tby"); len(left) < 5 {
		t.Errorf("bystander lab lost things: %q", left)
	}

	// Down with neither state nor directory: everything but the files, by ID alone.
	dir3 := filepath.Join(t.TempDir(), "lab")
	up(t, Config{ID: "tid", Dir: dir3, Subnet: "10.97.7.0/24", Nodes: []NodeSpec{{Name: "a"}}})
	if err := Down(context.Background(), "", "tid"); err != nil {
		t.Fatalf("Down by ID: %v", err)
	}
	assertGone(t, "tid", "")
}

// assertGone checks with the system's own tools, not the lab's enumeration, that nothing of the
// lab is left: network namespaces, links, iptables rules, mounts, processes, files.
func assertGone(t *testing.T, id, dir string) {
	t.Helper()
	sh := func(args ...string) string {
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%q: %v: %s", args, err, out)
		}
		return string(out)
	}
	for _, line := range strings.Split(sh("ip", "netns", "list"), "\n") {
		if strings.HasPrefix(line, "kb-"+id+"-") {
			t.Errorf("netns left: %s", line)
		}
	}
	for _, line := range strings.Split(sh("ip", "-o", "link", "show"), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 {
			name := strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0]
			if name == "kb"+id+"0" || name == "kb"+id+"1" || strings.HasPrefix(name, "kb"+id+"-") {
				t.Errorf("link left: %s", line)
			}
		}
	}
	for _, table := range []string{"nat", "filter"} {
		for _, line := range strings.Split(sh("iptables", "-w", "-t", table, "-S"), "\n") {
			if strings.Contains(line+" ", "kbootstrap-lab-"+id+" ") {
				t.Errorf("iptables rule left: %s", line)
			}
		}
	}
	mounts, _ := os.ReadFile("/proc/mounts")
	for _, line := range strings.Split(string(mounts), "\n") {
		if strings.Contains(line, "kblab-"+id+"-") || strings.Contains(line, "/run/netns/kb-"+id+"-") ||
			dir != "" && strings.Contains(line, dir) {
			t.Errorf("mount left: %s", line)
		}
	}
	for _, line := range strings.Split(sh("ps", "-e", "-o", "pid=,stat=,args="), "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && !strings.HasPrefix(f[1], "Z") && (dir != "" && strings.Contains(line, dir) || strings.Contains(line, "lab-init")) {
			// lab-init belongs to some lab; make sure it is not this one's.
			if env, _ := os.ReadFile("/proc/" + f[0] + "/environ"); dir != "" && strings.Contains(line, dir) ||
				strings.Contains(string(env), envID+"="+id+"\x00") {
				t.Errorf("process left: %s", line)
			}
		}
	}
	if dir != "" {
		if ents, err := os.ReadDir(dir); err == nil {
			t.Errorf("%s left with %d entries", dir, len(ents))
		}
	}
	// Kubernetes nodes' cgroups, in every hierarchy.
	if out := strings.TrimSpace(sh("find", "/sys/fs/cgroup", "-maxdepth", "8", "-type", "d", "-name", "kblab-"+id+"-*")); out != "" {
		t.Errorf("cgroups left: %s", out)
	}
	if left, err := Leftovers(context.Background(), dir, id); err != nil || len(left) > 0 {
		t.Errorf("Leftovers: %v %q", err, left)
	}
}
