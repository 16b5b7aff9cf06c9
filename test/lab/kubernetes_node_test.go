package lab

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// requireKubernetesRootfs skips when the Kubernetes rootfs is not cached and cannot be built.
func requireKubernetesRootfs(t *testing.T) {
	t.Helper()
	requireLab(t)
	if _, err := os.Stat("/sys/fs/cgroup/unified"); err != nil {
		if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
			t.Skip("lab test skipped: no cgroup hierarchies mounted under /sys/fs/cgroup")
		}
	}
	if !isDir(filepath.Join(cacheDir(), KubernetesRootfsName())) {
		if _, err := exec.LookPath("debootstrap"); err != nil {
			t.Skipf("lab test skipped: the Kubernetes rootfs %s is not cached and debootstrap is not installed (apt-get install debootstrap)",
				filepath.Join(cacheDir(), KubernetesRootfsName()))
		}
	}
}

// TestLabKubernetesNodes checks what makes a Kubernetes node VM-like and harmless to the host,
// without kubeadm: systemd as PID 1 with the product's units running for real, the node's own
// cgroup tree (cgroup namespace), the sysctl shields and the read-only /proc/sys, the host
// directories under /var/lib, Stop/Start/Partition/Heal, and a Down by ID alone that leaves no
// cgroup behind.
func TestLabKubernetesNodes(t *testing.T) {
	requireKubernetesRootfs(t)
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "lab")
	l := up(t, Config{ID: "tk8s", Dir: dir, Subnet: "10.97.11.0/24", Subnet2: "10.97.12.0/24", Kubernetes: true,
		Nodes: []NodeSpec{{Name: "n1", Role: RoleControlPlane}, {Name: "n2", Role: RoleLoadBalancer}}})
	a1 := addr(t, l, "n1", 0)
	k := &kubeadmRun{t: t, l: l}
	k.waitFor("n1", "systemd running", time.Minute, `[ "$(systemctl is-system-running || true)" = running ]`)

	if got := mustSSH(t, l, "root", a1, "ps -o comm= -p 1"); got != "systemd" {
		t.Fatalf("PID 1 is %q, want systemd", got)
	}
	for _, unit := range []string{"ssh", "containerd", "systemd-journald"} {
		if got, _ := ssh(t, l, "root", a1, "systemctl is-active "+unit); got != "active" {
			t.Errorf("%s is %q", unit, got)
		}
	}
	// A unit written the way the product writes one runs for real, and a login is a session.
	mustSSH(t, l, "root", a1, `cat > /etc/systemd/system/kbtest.service <<'EOF'
[Service]
ExecStart=/bin/sleep infinity
[Install]
WantedBy=multi-user.target
EOF
systemctl daemon-reload && systemctl enable --now kbtest.service`)
	if got := mustSSH(t, l, "root", a1, "systemctl is-active kbtest; loginctl list-sessions --no-legend | grep -c root"); got != "active\n1" {
		t.Errorf("unit and session: %q", got)
	}
	// The node's cgroups: its own root (cgroup namespace), systemd's slices in it, and on the host
	// under kblab-tk8s-n1 in every hierarchy.
	if got := mustSSH(t, l, "root", a1, "cat /proc/self/cgroup"); strings.Contains(got, "kblab-") || !strings.Contains(got, "user.slice") {
		t.Errorf("node's /proc/self/cgroup: %s", got)
	}
	n1, _ := l.Node("n1")
	hs, err := cgroupHierarchies()
	if err != nil {
		t.Fatal(err)
	}
	cgs := labCgroups("tk8s")
	if len(cgs) != 2*len(hs) {
		t.Errorf("lab cgroups %v, want one per node in each of %d hierarchies", cgs, len(hs))
	}
	found := false
	for _, cg := range cgs {
		for _, p := range cgroupPIDs(cg) {
			found = found || p == n1.HostPID
		}
	}
	if !found {
		t.Errorf("n1's PID 1 (%d) is in none of %v", n1.HostPID, cgs)
	}
	if got := mustExec(t, l, "n1", "cat", "/proc/self/cgroup"); strings.Contains(got, "process_api") || strings.Contains(got, "kblab-") {
		t.Errorf("Exec runs outside the node's cgroups: %s", got)
	}
	// /proc/sys: read-only except the node's network namespace; the kubelet's sysctls are shields.
	hostPanic, _ := os.ReadFile("/proc/sys/kernel/panic")
	mustSSH(t, l, "root", a1, "echo 77 > /proc/sys/kernel/panic && sysctl -w net.ipv4.ip_forward=1 >/dev/null")
	if got := mustSSH(t, l, "root", a1, "cat /proc/sys/kernel/panic"); got != "77" {
		t.Errorf("kernel.panic in the node: %q", got)
	}
	if now, _ := os.ReadFile("/proc/sys/kernel/panic"); string(now) != string(hostPanic) {
		t.Errorf("the host's kernel.panic changed: %q -> %q", hostPanic, now)
	}
	if out, err := ssh(t, l, "root", a1, "echo 4194304 > /proc/sys/kernel/pid_max"); err == nil || !strings.Contains(out, "Read-only") {
		t.Errorf("writing kernel.pid_max in a node: %v %q, want Read-only file system", err, out)
	}
	// containerd's, the kubelet's and etcd's state live on the host.
	mustSSH(t, l, "root", a1, "touch /var/lib/etcd/marker")
	if _, err := os.Stat(filepath.Join(dir, "nodes", "n1", "var", "etcd", "marker")); err != nil {
		t.Errorf("/var/lib/etcd is not the host directory: %v", err)
	}

	// Stop and Start: the disk, the cgroups and the enabled unit stay.
	ctx := context.Background()
	if err := l.Stop(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	for _, cg := range cgs {
		if pids := cgroupPIDs(cg); strings.Contains(cg, "-n1") && len(pids) > 0 {
			t.Errorf("processes left in %s after Stop: %v", cg, pids)
		}
	}
	if err := l.Start(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	k.waitFor("n1", "systemd running after Start", time.Minute, `[ "$(systemctl is-system-running || true)" = running ]`)
	if got := mustSSH(t, l, "root", a1, "systemctl is-active kbtest; cat /proc/sys/kernel/panic; ls /var/lib/etcd"); got != "active\n77\nmarker" {
		t.Errorf("after Stop/Start: %q", got)
	}
	if err := l.Partition(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	if sshReachable(a1) {
		t.Error("a partitioned node answers")
	}
	if err := l.Heal(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	mustSSH(t, l, "root", a1, "true")

	// Down by ID alone, as after a crash: no cgroup is left.
	if err := os.Remove(filepath.Join(dir, stateFile)); err != nil {
		t.Fatal(err)
	}
	if err := Down(ctx, dir, "tk8s"); err != nil {
		t.Fatalf("Down: %v", err)
	}
	assertGone(t, "tk8s", dir)
}
