package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestLabKubeadmProof proves that lab nodes stand in for Vagrant VMs under a real kubeadm cluster
// (issue 5): with the offline artifacts of `make lab-artifacts` copied onto the nodes by the test,
// and kubeadm run over ssh by the test (not by kbootstrap), cp1 inits behind a haproxy load
// balancer (lb1), cp2 joins with --control-plane --certificate-key, worker1 joins, every node
// becomes Ready, CoreDNS answers kubernetes.default.svc.cluster.local from the worker through each
// CoreDNS pod on the control planes, and `kubeadm reset -f` then a rejoin of the worker works.
// Throughout, the host's sysctls, its processes and its iptables stay as they were; after Down
// nothing of the lab is left (namespaces, links, mounts, cgroups, processes).
//
//	make lab-artifacts && cd test && go test -count=1 -v -run TestLabKubeadmProof ./lab/
func TestLabKubeadmProof(t *testing.T) {
	requireKubernetesRootfs(t)
	bin, images := requireKubernetesArtifacts(t)
	start := time.Now()
	step := func(st time.Time, format string, args ...any) {
		t.Logf("step: %s (%.1fs)", fmt.Sprintf(format, args...), time.Since(st).Seconds())
	}

	hostBefore := snapshotHost(t)
	dir := filepath.Join(t.TempDir(), "lab")
	const id = "tkadm"
	cfg := Config{ID: id, Dir: dir, Subnet: "10.97.9.0/24", Subnet2: "10.97.10.0/24", ArtifactsDir: bin,
		Kubernetes: true, Log: testLog{t},
		Nodes: []NodeSpec{{Name: "lb1", Role: RoleLoadBalancer}, {Name: "cp1", Role: RoleControlPlane},
			{Name: "cp2", Role: RoleControlPlane}, {Name: "worker1", Role: RoleWorker}}}
	downed := false
	t.Cleanup(func() {
		if downed {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := Down(ctx, dir, id); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	st := time.Now()
	l, err := Up(ctx, cfg)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	step(st, "lab up (4 Kubernetes nodes)")
	if l.images() != images {
		t.Fatalf("the lab mounts images from %q, want %q", l.images(), images)
	}
	ip := func(node string) string { return addr(t, l, node, 0) }
	k := &kubeadmRun{t: t, l: l}

	// systemd is PID 1 of every node and the system is up.
	st = time.Now()
	for _, n := range l.Nodes {
		k.waitFor(n.Name, "systemd running", 60*time.Second, `s=$(systemctl is-system-running || true); [ "$s" = running ]`)
		if got := k.ssh(n.Name, `ps -o comm= -p 1`); got != "systemd" {
			t.Fatalf("%s: PID 1 is %q, want systemd", n.Name, got)
		}
	}
	step(st, "systemd running on every node")

	// The artifacts go onto the nodes: binaries, kubelet unit, containerd config, images.
	st = time.Now()
	imgs, err := filepath.Glob(filepath.Join(images, "*.tar"))
	if err != nil || len(imgs) == 0 {
		t.Fatalf("no images in %s", images)
	}
	workerImages := []string{}
	for _, f := range imgs {
		if b := filepath.Base(f); strings.Contains(b, "kube-proxy") || strings.Contains(b, "pause") || strings.Contains(b, "coredns") {
			workerImages = append(workerImages, b)
		}
	}
	err = parallel(3, 3, func(i int) error {
		node := []string{"cp1", "cp2", "worker1"}[i]
		want := "*.tar"
		if node == "worker1" {
			want = strings.Join(workerImages, " ")
		}
		_, err := k.try(node, prepareNodeScript(want))
		return err
	})
	if err != nil {
		t.Fatalf("preparing the nodes: %v", err)
	}
	k.ssh("lb1", haproxyScript(ip("cp1"), ip("cp2")))
	step(st, "artifacts installed on cp1, cp2, worker1 (binaries, images, containerd config, kubelet unit); haproxy on lb1")

	// kubeadm init on cp1, behind lb1.
	st = time.Now()
	key := make([]byte, 32)
	rand.Read(key)
	certKey := hex.EncodeToString(key)
	endpoint := ip("lb1") + ":6443"
	k.ssh("cp1", writeFileScript("/root/kubeadm-init.yaml", KubeadmInitConfig("cp1", ip("cp1"), endpoint, certKey)))
	k.ssh("cp1", `kubeadm init --config /root/kubeadm-init.yaml --upload-certs >/root/kubeadm-init.log 2>&1 || { cat /root/kubeadm-init.log; exit 1; }`)
	step(st, "kubeadm init on cp1 (controlPlaneEndpoint %s)", endpoint)

	join := func(node string, controlPlane bool) {
		st := time.Now()
		cmd := k.ssh("cp1", `kubeadm token create --print-join-command 2>/dev/null`)
		if !strings.HasPrefix(cmd, "kubeadm join "+endpoint+" ") {
			t.Fatalf("join command %q does not go through %s", cmd, endpoint)
		}
		cmd += " --cri-socket unix:///run/containerd/containerd.sock --node-name " + node
		if controlPlane {
			cmd += " --control-plane --certificate-key " + certKey + " --apiserver-advertise-address " + ip(node)
		}
		k.ssh(node, cmd+` >/root/kubeadm-join.log 2>&1 || { cat /root/kubeadm-join.log; exit 1; }`)
		step(st, "kubeadm join of %s (control plane: %v)", node, controlPlane)
	}
	join("cp2", true)
	join("worker1", false)

	// Pod network: each node's pod CIDR (assigned by the controller-manager) on a bridge, and routes
	// between the nodes' pod CIDRs.
	network := func() {
		st := time.Now()
		cidrs := map[string]string{}
		k.waitFor("cp1", "pod CIDRs assigned", 60*time.Second, kubectl+` get nodes -o jsonpath='{range .items[*]}{.spec.podCIDR}{"\n"}{end}' | grep -c . | grep -qx 3`)
		out := k.ssh("cp1", kubectl+` get nodes -o jsonpath='{range .items[*]}{.metadata.name} {.spec.podCIDR}{"\n"}{end}'`)
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) == 2 {
				cidrs[f[0]] = f[1]
			}
		}
		for _, n := range []string{"cp1", "cp2", "worker1"} {
			if cidrs[n] == "" {
				t.Fatalf("node %s has no pod CIDR: %q", n, out)
			}
			k.ssh(n, writeFileScript("/etc/cni/net.d/10-lab.conflist", cniConfig(cidrs[n])))
		}
		if err := l.RoutePodCIDRs(ctx, cidrs); err != nil {
			t.Fatal(err)
		}
		step(st, "pod network: %v", cidrs)
	}
	network()

	ready := func() {
		st := time.Now()
		k.waitFor("cp1", "3 nodes Ready", 3*time.Minute,
			kubectl+` get nodes --no-headers | awk '$2=="Ready"' | grep -c . | grep -qx 3`)
		k.ssh("cp1", kubectl+` -n kube-system rollout status deploy/coredns --timeout=180s`)
		k.ssh("cp1", kubectl+` -n kube-system rollout status ds/kube-proxy --timeout=180s`)
		step(st, "cp1, cp2, worker1 Ready; CoreDNS and kube-proxy rolled out")
	}
	ready()
	t.Log(k.ssh("cp1", kubectl+` get nodes -o wide; `+kubectl+` get pods -A -o wide`))

	dns := func() {
		st := time.Now()
		// Through the kube-dns Service (kube-proxy on the worker), and from the worker to every
		// CoreDNS pod directly: the pods run on the control planes, so this crosses nodes.
		svc := k.ssh("cp1", kubectl+` -n kube-system get svc kube-dns -o jsonpath='{.spec.clusterIP}'`)
		k.waitFor("worker1", "CoreDNS answers through the kube-dns Service", 90*time.Second,
			`[ "$(dig +short +time=2 +tries=1 @`+svc+` kubernetes.default.svc.cluster.local)" = 10.96.0.1 ]`)
		pods := k.ssh("cp1", kubectl+` -n kube-system get pods -l k8s-app=kube-dns -o jsonpath='{range .items[*]}{.status.podIP} {.spec.nodeName}{"\n"}{end}'`)
		n := 0
		for _, line := range strings.Split(pods, "\n") {
			f := strings.Fields(line)
			if len(f) != 2 {
				continue
			}
			if f[1] == "worker1" {
				continue
			}
			n++
			k.waitFor("worker1", "CoreDNS pod "+f[0]+" on "+f[1]+" answers", 60*time.Second,
				`[ "$(dig +short +time=2 +tries=1 @`+f[0]+` kubernetes.default.svc.cluster.local)" = 10.96.0.1 ]`)
		}
		if n == 0 {
			t.Fatalf("no CoreDNS pod on another node than worker1: %s", pods)
		}
		step(st, "CoreDNS answers kubernetes.default.svc.cluster.local from worker1 (service %s, %d pods on other nodes)", svc, n)
	}
	dns()

	// Nothing of a node leaks to the host.
	st = time.Now()
	checkHost(t, hostBefore, false)
	checkNodeProcesses(t, l)
	step(st, "host sysctls, processes and iptables unchanged; every node process in its node's cgroups")

	// kubeadm reset and rejoin of the worker.
	st = time.Now()
	k.ssh("cp1", kubectl+` drain worker1 --ignore-daemonsets --delete-emptydir-data --timeout=120s >/dev/null && `+kubectl+` delete node worker1`)
	k.ssh("worker1", `kubeadm reset -f >/root/kubeadm-reset.log 2>&1 || { cat /root/kubeadm-reset.log; exit 1; }
test ! -e /etc/kubernetes/kubelet.conf
rm -f /etc/cni/net.d/10-lab.conflist`)
	step(st, "kubeadm reset -f on worker1")
	join("worker1", false)
	network()
	ready()
	dns()

	checkHost(t, hostBefore, false)
	st = time.Now()
	if err := l.Down(ctx); err != nil {
		t.Fatalf("Down: %v", err)
	}
	downed = true
	left, err := Leftovers(ctx, dir, id)
	if err != nil || len(left) > 0 {
		t.Fatalf("left after Down: %v %v", left, err)
	}
	if cg := labCgroups(id); len(cg) > 0 {
		t.Fatalf("cgroups left after Down: %v", cg)
	}
	checkHost(t, hostBefore, true)
	step(st, "lab down; no namespace, link, mount, cgroup or process left; host unchanged")
	step(start, "kubeadm proof")
}

const kubectl = "kubectl --kubeconfig /etc/kubernetes/admin.conf"

// requireKubernetesArtifacts skips the test (saying so) unless `make lab-artifacts` has left the
// binaries and the images: $KBOOTSTRAP_LAB_ARTIFACTS or <repo>/.lab/artifacts/bin, and images/
// next to it. In CI (CI=true), where .ci/run builds them first, their absence is a failure.
func requireKubernetesArtifacts(t *testing.T) (bin, images string) {
	t.Helper()
	bin = os.Getenv("KBOOTSTRAP_LAB_ARTIFACTS")
	if bin == "" {
		root := RepoRoot()
		if root == "" {
			t.Skip("kubeadm proof skipped: not inside the kbootstrap repository and $KBOOTSTRAP_LAB_ARTIFACTS is not set")
		}
		bin = filepath.Join(root, ".lab", "artifacts", "bin")
	}
	images = filepath.Join(filepath.Dir(bin), "images")
	var missing []string
	for _, b := range []string{"kubeadm", "kubelet", "kubectl"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			missing = append(missing, filepath.Join(bin, b))
		}
	}
	for _, img := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "etcd", "coredns", "pause"} {
		if m, _ := filepath.Glob(filepath.Join(images, "*"+img+"_*.tar")); len(m) == 0 {
			missing = append(missing, filepath.Join(images, "registry.k8s.io_"+img+"_*.tar"))
		}
	}
	if len(missing) > 0 {
		msg := "the offline artifacts are missing (run `make lab-artifacts` first): " + strings.Join(missing, ", ")
		if os.Getenv("CI") == "true" {
			// .ci/run builds them first: in CI the proof must run, not skip.
			t.Fatalf("kubeadm proof: %s", msg)
		}
		t.Skipf("kubeadm proof skipped: %s", msg)
	}
	return bin, images
}

// kubeadmRun runs scripts on the lab's nodes over ssh as root.
type kubeadmRun struct {
	t *testing.T
	l *Lab
}

// try runs a bash script on the node over ssh as root and returns its
// trimmed output.
func (k *kubeadmRun) try(node, script string) (string, error) {
	return k.l.SSH(context.Background(), node, "root", script)
}

func (k *kubeadmRun) ssh(node, script string) string {
	k.t.Helper()
	out, err := k.try(node, script)
	if err != nil {
		k.t.Fatal(err)
	}
	return out
}

// waitFor polls a script on the node until it succeeds.
func (k *kubeadmRun) waitFor(node, what string, timeout time.Duration, script string) {
	k.t.Helper()
	if err := WaitFor(timeout, time.Second, func() error { _, err := k.try(node, script); return err }); err != nil {
		k.t.Fatalf("%s: %s: %v", node, what, err)
	}
}

// writeFileScript is a shell script that writes content to path.
func writeFileScript(path, content string) string {
	return fmt.Sprintf("mkdir -p %s\ncat > %s <<'KBLAB_EOF'\n%sKBLAB_EOF\n", filepath.Dir(path), path, content)
}

// containerdConfig is what a lab node's containerd needs for kubeadm: the cgroupfs driver, the
// pause image kubeadm expects, Debian's CNI plugin directory, and restrict_oom_score_adj (this
// machine's bounding set lacks CAP_SYS_RESOURCE; without it runc fails with "can't get final
// child's PID from pipe").
const containerdConfig = `version = 2
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10.1"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "/etc/cni/net.d"
`

// The kubelet's unit and kubeadm's drop-in, as Kubernetes' deb packages install them.
const kubeletUnit = `[Unit]
Description=kubelet: The Kubernetes Node Agent
Documentation=https://kubernetes.io/docs/
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/usr/bin/kubelet
Restart=always
StartLimitInterval=0
RestartSec=2

[Install]
WantedBy=multi-user.target
`

const kubeadmDropIn = `[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
`

// prepareNodeScript installs the artifacts on a node, as an air-gapped user would: kubeadm,
// kubelet and kubectl from the lab's read-only artifacts mount, the kubelet unit, containerd's
// configuration, the images (the archives matching the glob) and IP forwarding.
func prepareNodeScript(imageGlob string) string {
	return writeFileScript("/etc/containerd/config.toml", containerdConfig) +
		writeFileScript("/etc/systemd/system/kubelet.service", kubeletUnit) +
		writeFileScript("/etc/systemd/system/kubelet.service.d/10-kubeadm.conf", kubeadmDropIn) +
		writeFileScript("/etc/sysctl.d/99-kubernetes.conf", "net.ipv4.ip_forward = 1\n") + `
for b in kubeadm kubelet kubectl; do install -m 0755 /opt/kbootstrap/bin/$b /usr/bin/$b; done
systemctl daemon-reload
systemctl enable kubelet 2>/dev/null
systemctl restart containerd
systemctl restart systemd-sysctl
[ "$(cat /proc/sys/net/ipv4/ip_forward)" = 1 ]
cd /opt/kbootstrap/images
for f in ` + imageGlob + `; do ctr -n k8s.io images import "$f" >/dev/null; done
`
}

// haproxyScript makes lb1 balance the API servers' port 6443.
func haproxyScript(cps ...string) string {
	var b strings.Builder
	b.WriteString(`global
  maxconn 4096
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
frontend kube-apiserver
  bind :6443
  default_backend control-planes
backend control-planes
  balance roundrobin
  option tcp-check
`)
	for i, a := range cps {
		fmt.Fprintf(&b, "  server cp%d %s:6443 check inter 2s fall 2 rise 1\n", i+1, a)
	}
	return writeFileScript("/etc/haproxy/haproxy.cfg", b.String()) +
		"haproxy -c -f /etc/haproxy/haproxy.cfg >/dev/null\nsystemctl enable --now haproxy 2>/dev/null\nsystemctl restart haproxy\n"
}

// cniConfig is a bridge + host-local network for one node's pod CIDR.
func cniConfig(cidr string) string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "lab",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, cidr)
}

// hostState is what the test compares before, during and after the cluster.
type hostState struct {
	sysctls  map[string]string
	procs    map[int]procInfo // by PID
	iptables string           // KUBE- chains of the host's iptables
}

type procInfo struct{ start, cgroup, oomScoreAdj, comm, netns string }

// volatileSysctl matches /proc/sys entries that change by themselves (counters, random values) or
// that labs own while up (IP forwarding, restored by the last lab's Down). The kernel ties
// net.ipv4.conf.all.accept_redirects to forwarding (inet_forward_change sets it to !forwarding), so
// it flips with ip_forward on a host where forwarding starts off.
var volatileSysctl = regexp.MustCompile(`^(kernel/random/|kernel/ns_last_pid|kernel/pty/nr|kernel/tainted|fs/dentry-state|fs/inode-|fs/file-nr|fs/aio-nr|fs/quota/|fs/binfmt_misc/|net/netfilter/nf_conntrack_count|net/ipv4/ip_forward|net/ipv4/conf/all/accept_redirects|net/ipv[46]/conf/.*/forwarding|net/ipv6/conf/(kb|veth)|net/ipv4/conf/(kb|veth)|net/ipv4/neigh/(kb|veth)|net/ipv6/neigh/(kb|veth)|net/.*/(kb[a-z0-9]*-|veth|cni|flannel|cali)|net/ipv4/route/|net/ipv6/route/|vm/stat_refresh|fs/pipe-user-pages|user/|kernel/perf_event_max_sample_rate|kernel/sched_domain|debug/|dev/cdrom)`)

func snapshotHost(t *testing.T) hostState {
	t.Helper()
	s := hostState{sysctls: map[string]string{}, procs: map[int]procInfo{}}
	filepath.WalkDir("/proc/sys", func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		key := strings.TrimPrefix(p, "/proc/sys/")
		if volatileSysctl.MatchString(key) {
			return nil
		}
		if fi, err := d.Info(); err != nil || fi.Mode().Perm()&0o444 == 0 {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		s.sysctls[key] = strings.TrimSpace(string(b))
		return nil
	})
	for _, pid := range allPIDs() {
		s.procs[pid] = readProcInfo(pid)
	}
	out, _ := exec.Command("iptables-save").Output()
	var kube []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "KUBE-") || strings.Contains(line, "CNI-") {
			kube = append(kube, line)
		}
	}
	s.iptables = strings.Join(kube, "\n")
	return s
}

func readProcInfo(pid int) procInfo {
	p := "/proc/" + strconv.Itoa(pid)
	cg, _ := os.ReadFile(p + "/cgroup")
	oom, _ := os.ReadFile(p + "/oom_score_adj")
	comm, _ := os.ReadFile(p + "/comm")
	netns, _ := os.Readlink(p + "/ns/net")
	return procInfo{start: procStart(pid), cgroup: string(cg), oomScoreAdj: strings.TrimSpace(string(oom)),
		comm: strings.TrimSpace(string(comm)), netns: netns}
}

// checkHost compares the host with the snapshot: the same sysctls, no KUBE-/CNI- iptables rules,
// and every process that was there before and still runs has kept its cgroups and OOM score
// adjustment (a kubelet that saw host processes would move them or change their scores). Processes
// of other sessions on this machine come and go; the host's PID 1 must still be there. Only host
// processes count: those in the host's network namespace (other labs' nodes have their own).
func checkHost(t *testing.T, before hostState, final bool) {
	t.Helper()
	now := snapshotHost(t)
	hostNet, _ := os.Readlink("/proc/self/ns/net")
	var diffs []string
	for k, v := range before.sysctls {
		if w, ok := now.sysctls[k]; ok && w != v {
			diffs = append(diffs, fmt.Sprintf("sysctl %s: %q -> %q", strings.ReplaceAll(k, "/", "."), v, w))
		}
	}
	if now.iptables != before.iptables {
		diffs = append(diffs, fmt.Sprintf("host iptables KUBE-/CNI- rules: before %q, now %q", before.iptables, now.iptables))
	}
	for pid, p := range before.procs {
		q, ok := now.procs[pid]
		if !ok || q.start != p.start {
			if pid == 1 {
				diffs = append(diffs, "the host's PID 1 is gone")
			}
			continue
		}
		if p.netns != hostNet || q.netns != hostNet {
			continue
		}
		if q.oomScoreAdj != p.oomScoreAdj {
			diffs = append(diffs, fmt.Sprintf("process %d (%s): oom_score_adj %s -> %s", pid, p.comm, p.oomScoreAdj, q.oomScoreAdj))
		}
		if q.cgroup != p.cgroup && strings.Contains(q.cgroup, "kblab-") {
			diffs = append(diffs, fmt.Sprintf("process %d (%s) moved into a lab cgroup: %s", pid, p.comm, q.cgroup))
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Errorf("the host changed (final=%v):\n%s", final, strings.Join(diffs, "\n"))
	}
}

// checkNodeProcesses checks that every process in a node's PID namespace is in that node's
// cgroups (pods have PID namespaces of their own, nested in the node's).
func checkNodeProcesses(t *testing.T, l *Lab) {
	t.Helper()
	pidNS := func(pid int) string { s, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); return s }
	l.mu.Lock()
	nodes := append([]*nodeState(nil), l.nodes...)
	l.mu.Unlock()
	var errs []error
	var mu sync.Mutex
	for _, n := range nodes {
		ns := pidNS(n.HostPID)
		in := map[int]bool{}
		for _, cg := range n.Cgroups {
			for _, p := range cgroupPIDs(cg) {
				in[p] = true
			}
		}
		count := 0
		for _, pid := range allPIDs() {
			pns := pidNS(pid)
			if pns == "" {
				continue
			}
			if pns == ns {
				count++
				if !in[pid] && procStart(pid) != "" {
					if err := syscall.Kill(pid, 0); err == nil {
						mu.Lock()
						errs = append(errs, fmt.Errorf("node %s: process %d (%s) is outside the node's cgroups", n.Name, pid, readProcInfo(pid).comm))
						mu.Unlock()
					}
				}
			}
		}
		if count < 5 {
			errs = append(errs, fmt.Errorf("node %s: only %d processes in its PID namespace", n.Name, count))
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Error(err)
	}
}
