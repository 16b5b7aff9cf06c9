package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kbootstrap/kbootstrap/test/lab"
)

// prepSpec is a lab of VM-like nodes (systemd, containerd, no kubeadm) of
// its own: the shipped prepare-node, loadbalancer and etcd-backup-timer
// playbooks turn them into a cluster that kubeadm inits and joins.
var prepSpec = labSpec{
	id: "prep", subnet: "10.89.0.0/24", subnet2: "10.90.0.0/24", kubernetes: true, dedicated: true,
	nodes: []lab.NodeSpec{{Name: "cp1", Role: "control-plane"}, {Name: "worker1", Role: "worker"}, {Name: "lb1", Role: "loadbalancer"}},
}

// requireKubeArtifacts returns the directories of the upstream binaries and
// image tarballs (`make lab-artifacts`); it skips the test without them, or
// fails it in CI (CI=true), where they are built first.
func requireKubeArtifacts(t *testing.T) (bin, images string) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	bin = artifactsBin()
	if bin == "" {
		bin = filepath.Join(repoRoot, ".lab", "artifacts", "bin")
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
		msg := "the offline Kubernetes artifacts are missing (run `make lab-artifacts` first): " + strings.Join(missing, ", ")
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin, images
}

// recapWant checks the recap of every host of a run.
func recapWant(t *testing.T, what string, recap map[string]hostStats, stderr string, hosts []string, ok func(hostStats) bool) {
	t.Helper()
	if len(recap) != len(hosts) {
		t.Errorf("%s: hosts %v, want %v\n%s", what, recap, hosts, stderr)
	}
	for _, h := range hosts {
		if s, found := recap[h]; !found || !ok(s) {
			t.Errorf("%s: %s: %+v\n%s", what, h, s, stderr)
		}
	}
}

// TestPrepareNodeKubeadmInitAndLoadBalancer is issue 6's proof of the
// shipped playbooks: on VM-like nodes that have containerd but neither
// kubeadm nor a containerd configuration, prepare-node (air-gapped:
// --binaries and --images from the workstation) alone makes cp1 and worker1
// ready for kubeadm; a second run and --check change nothing; loadbalancer
// makes lb1's haproxy balance 6443 to the control planes; kubeadm init on cp1
// behind lb1 succeeds, kubectl works through lb1, worker1 joins; haproxy's
// configuration changes only when the control planes do; etcd-backup-timer
// installs the snapshot timer on cp1.
//
//	make lab-artifacts && cd test && go test -count=1 -v -run TestPrepareNode ./e2e/
func TestPrepareNodeKubeadmInitAndLoadBalancer(t *testing.T) {
	bin, images := requireKubeArtifacts(t)
	start := time.Now()
	step := func(st time.Time, format string, args ...any) {
		t.Logf("step: %s (%.1fs)", fmt.Sprintf(format, args...), time.Since(st).Seconds())
	}
	st := time.Now()
	l := labFor(t, prepSpec)
	inv := l.InventoryFile
	for _, n := range l.Nodes {
		waitSh(t, l, n.Name, "systemd up", 90*time.Second, `s=$(systemctl is-system-running || true); [ "$s" = running ] || [ "$s" = degraded ]`)
	}
	step(st, "lab up, systemd running on cp1, worker1, lb1")
	cp1, lb1 := nodeAddr(t, l, "cp1"), nodeAddr(t, l, "lb1")
	nodes := []string{"cp1", "worker1"}

	// prepare-node, as an air-gapped user runs it.
	prepare := []string{"-i", inv, "prepare-node", "--binaries", bin, "--images", images,
		"-e", "cgroup_driver=cgroupfs", "-e", "restrict_oom_score_adj=true"}
	st = time.Now()
	recap, stderr, code := runPlaybook(t, prepare...)
	if code != 0 {
		t.Fatalf("prepare-node: exit %d\n%s", code, stderr)
	}
	recapWant(t, "prepare-node", recap, stderr, nodes, func(s hostStats) bool { return s.Changed > 0 && s.Failed == 0 })
	step(st, "prepare-node on cp1 and worker1: %+v", recap)
	for _, n := range nodes {
		got := mustSh(t, l, n, `kubeadm version -o short; kubelet --version; systemctl is-enabled kubelet
grep -c 'SystemdCgroup = false' /etc/containerd/config.toml
grep -c 'sandbox_image = "registry.k8s.io/pause:3.10.1"' /etc/containerd/config.toml
cat /etc/crictl.yaml | head -1
cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/bridge/bridge-nf-call-iptables
ctr -n k8s.io images ls -q | grep -cE '^(registry.k8s.io|docker.io)/'
systemctl cat kubelet | grep -c '^ExecStart=/usr/bin/kubelet \$KUBELET_KUBECONFIG_ARGS'`)
		// 9 images: the 7 kubeadm's config images list names, agnhost (verify's workload) and kube-router (the pod network).
		want := "v1.34.4\nKubernetes v1.34.4\nenabled\n1\n1\nruntime-endpoint: unix:///run/containerd/containerd.sock\n1\n1\n9\n1"
		if got != want {
			t.Errorf("%s after prepare-node:\n%s\nwant:\n%s", n, got, want)
		}
	}

	// Again, and --check: nothing changes.
	st = time.Now()
	for _, check := range []bool{false, true} {
		args := prepare
		if check {
			args = append(append([]string{}, prepare...), "--check")
		}
		recap, stderr, code := runPlaybook(t, args...)
		if code != 0 {
			t.Fatalf("prepare-node again (check %v): exit %d\n%s", check, code, stderr)
		}
		recapWant(t, fmt.Sprintf("prepare-node again (check %v)", check), recap, stderr, nodes, func(s hostStats) bool { return s.Changed == 0 && s.Failed == 0 })
	}
	step(st, "prepare-node again and --check: no change")

	// haproxy on lb1 before kubeadm init: the controlPlaneEndpoint (lb1:6443)
	// must answer during init.
	st = time.Now()
	lbRecap, stderr, code := runPlaybook(t, "-i", inv, "loadbalancer")
	if code != 0 || lbRecap["lb1"].Changed == 0 || len(lbRecap) != 1 {
		t.Fatalf("loadbalancer: exit %d %+v\n%s", code, lbRecap, stderr)
	}
	if got := mustSh(t, l, "lb1", `systemctl is-active haproxy; systemctl is-enabled haproxy; grep -E '^ +server ' /etc/haproxy/haproxy.cfg`); got != "active\nenabled\n    server cp1 "+cp1+":6443 check" {
		t.Errorf("lb1: %q", got)
	}
	step(st, "loadbalancer on lb1")

	// kubeadm init on cp1 behind lb1, on a node prepared by the playbook only.
	st = time.Now()
	mustSh(t, l, "cp1", "cat > /root/kubeadm-init.yaml <<'EOF'\n"+lab.KubeadmInitConfig("cp1", cp1, lb1+":6443", "")+"EOF\n"+
		`kubeadm init --config /root/kubeadm-init.yaml >/root/kubeadm-init.log 2>&1 || { cat /root/kubeadm-init.log; exit 1; }`)
	step(st, "kubeadm init on cp1 (controlPlaneEndpoint %s:6443): %s", lb1,
		strings.ReplaceAll(mustSh(t, l, "cp1", `grep -hoE '(healthy|ready) after [0-9.]+m?s' /root/kubeadm-init.log || true`), "\n", ", "))
	const kubectl = "kubectl --kubeconfig /etc/kubernetes/admin.conf"
	if got := mustSh(t, l, "cp1", kubectl+` get nodes -o name; grep -c 'server: https://`+lb1+`:6443' /etc/kubernetes/admin.conf`); got != "node/cp1\n1" {
		t.Errorf("kubectl get nodes through lb1: %q", got)
	}
	waitSh(t, l, "worker1", "the API server through lb1", 60*time.Second, `[ "$(curl -sk --max-time 5 https://lb1:6443/livez)" = ok ]`)

	// worker1 joins.
	st = time.Now()
	join := mustSh(t, l, "cp1", `kubeadm token create --print-join-command 2>/dev/null`)
	if !strings.HasPrefix(join, "kubeadm join "+lb1+":6443 ") {
		t.Fatalf("join command %q does not go through lb1", join)
	}
	mustSh(t, l, "worker1", join+` --cri-socket unix:///run/containerd/containerd.sock --node-name worker1 >/root/kubeadm-join.log 2>&1 || { cat /root/kubeadm-join.log; exit 1; }`)
	if got := mustSh(t, l, "cp1", kubectl+` get nodes -o name`); got != "node/cp1\nnode/worker1" {
		t.Errorf("nodes after the join: %q", got)
	}
	step(st, "kubeadm join of worker1")

	// A prepared node stays prepared: prepare-node on the cluster's nodes
	// changes nothing.
	st = time.Now()
	recap, stderr, code = runPlaybook(t, append(append([]string{}, prepare...), "--check")...)
	if code != 0 {
		t.Fatalf("prepare-node --check on the cluster: exit %d\n%s", code, stderr)
	}
	recapWant(t, "prepare-node --check on the cluster", recap, stderr, nodes, func(s hostStats) bool { return s.Changed == 0 && s.Failed == 0 })
	step(st, "prepare-node --check on the running cluster: no change")

	// haproxy changes only when the control planes do.
	st = time.Now()
	lbRecap, stderr, code = runPlaybook(t, "-i", inv, "loadbalancer")
	if code != 0 || lbRecap["lb1"] != (hostStats{OK: 5}) {
		t.Errorf("loadbalancer again: exit %d %+v\n%s", code, lbRecap, stderr)
	}
	data, err := os.ReadFile(inv)
	if err != nil {
		t.Fatal(err)
	}
	more := writeFile(t, t.TempDir(), "kbootstrap.yaml", string(data)+"  - name: cp9\n    address: 10.89.0.99\n    role: control-plane\n", 0o644)
	pid := mustSh(t, l, "lb1", `systemctl show -p MainPID --value haproxy`)
	for i, c := range []struct {
		inv     string
		servers string
	}{{more, "cp1 cp9"}, {more, "cp1 cp9"}, {inv, "cp1"}} {
		lbRecap, stderr, code = runPlaybook(t, "-i", c.inv, "loadbalancer")
		changed := i != 1
		if code != 0 || (lbRecap["lb1"].Changed > 0) != changed {
			t.Errorf("loadbalancer run %d (%s): exit %d %+v, want changed %v\n%s", i, c.servers, code, lbRecap, changed, stderr)
		}
		got := mustSh(t, l, "lb1", `awk '$1 == "server" {printf "%s ", $2}' /etc/haproxy/haproxy.cfg`)
		if strings.TrimSpace(got) != c.servers {
			t.Errorf("run %d: haproxy servers %q, want %q", i, got, c.servers)
		}
		waitSh(t, l, "worker1", "the API server through lb1", 30*time.Second, `[ "$(curl -sk --max-time 5 https://lb1:6443/livez)" = ok ]`)
	}
	if now := mustSh(t, l, "lb1", `systemctl show -p MainPID --value haproxy`); now != pid {
		t.Errorf("haproxy restarted (MainPID %s -> %s) instead of reloading", pid, now)
	}
	step(st, "loadbalancer: unchanged run, a control plane added and removed (reloaded, not restarted)")

	// A configuration haproxy rejects never reaches it.
	st = time.Now()
	recapBad, stderr, code := runPlaybook(t, "-i", inv, "loadbalancer", "-e", "port=notaport")
	if code != 2 || recapBad["lb1"].Failed != 1 || !strings.Contains(stderr, "haproxy -c rejects the new configuration (haproxy.cfg unchanged): config : parsing [/etc/haproxy/haproxy.cfg.kbootstrap:") {
		t.Errorf("a bad configuration: exit %d %+v\n%s", code, recapBad, stderr)
	}
	if got := mustSh(t, l, "lb1", `grep -c 'bind \*:6443' /etc/haproxy/haproxy.cfg; systemctl is-active haproxy`); got != "1\nactive" {
		t.Errorf("after a rejected configuration: %q", got)
	}
	if _, _, code := runPlaybook(t, "-i", inv, "loadbalancer"); code != 0 {
		t.Errorf("loadbalancer after the rejected configuration: exit %d", code)
	}
	step(st, "loadbalancer: a configuration haproxy -c rejects is not installed")

	// etcd snapshot schedule on cp1: this very kbootstrap, a oneshot service
	// and its timer (the mechanism certs schedule uses); the second run
	// changes nothing.
	st = time.Now()
	for i, want := range []string{": installed;", ": unchanged;"} {
		r := kbRun(t, nil, "-i", inv, "--host", "cp1", "etcd", "snapshot", "schedule", "--keep", "3")
		if r.code != 0 || !strings.Contains(r.stdout, "cp1: systemd timer kbootstrap-etcd-backup.timer (") || !strings.Contains(r.stdout, want) {
			t.Fatalf("etcd snapshot schedule run %d: exit %d, want %q\n%s\n%s", i+1, r.code, want, r.stdout, r.stderr)
		}
	}
	got := mustSh(t, l, "cp1", `systemctl is-enabled kbootstrap-etcd-backup.timer; systemctl is-active kbootstrap-etcd-backup.timer
systemctl list-timers --all --no-legend kbootstrap-etcd-backup.timer | grep -c kbootstrap-etcd-backup.service
systemctl show -p ExecStart --value kbootstrap-etcd-backup.service | grep -o 'argv\[\]=[^;]*'
sha256sum < /usr/local/bin/kbootstrap | cut -c1-64
test -e /etc/cron.d/kbootstrap-etcd-backup || echo no-cron`)
	sum, err := exec.Command("sha256sum", kbBinary).Output()
	if err != nil {
		t.Fatal(err)
	}
	want := "enabled\nactive\n1\nargv[]=/usr/local/bin/kbootstrap etcd snapshot save --local --keep 3 /var/backups/etcd/snapshot.db \n" + string(sum[:64]) + "\nno-cron"
	if got != want {
		t.Errorf("cp1's backup timer:\n%s\nwant:\n%s", got, want)
	}
	// The timer's service takes a verified snapshot.
	mustSh(t, l, "cp1", "systemctl start kbootstrap-etcd-backup.service")
	if got := mustSh(t, l, "cp1", "/usr/local/bin/kbootstrap etcd snapshot verify /var/backups/etcd/snapshot.db >/dev/null && stat -c %a /var/backups/etcd"); got != "700" {
		t.Errorf("the snapshot the timer's service took: %q", got)
	}
	step(st, "etcd snapshot schedule on cp1")
	step(start, "prepare-node, loadbalancer, kubeadm init and join, etcd snapshot schedule")
}

// TestEtcdBackupTimerCronWithoutSystemd: on a node without systemd (the
// minimal lab's tini), etcd snapshot schedule installs kbootstrap and a cron
// entry instead of the timer, once.
func TestEtcdBackupTimerCronWithoutSystemd(t *testing.T) {
	l := labFor(t, playbookSpec)
	const clean = "rm -f /usr/local/bin/kbootstrap /etc/cron.d/kbootstrap-etcd-backup; rm -rf /var/backups/etcd"
	labExecIn(t, l, "pb1", clean)
	t.Cleanup(func() { labExecIn(t, l, "pb1", clean) })
	for i, want := range []string{": installed", ": unchanged"} {
		r := kbRun(t, nil, "-i", l.InventoryFile, "etcd", "snapshot", "schedule", "--cron", "5 4 * * *", "--randomized-delay", "0")
		if r.code != 0 || !strings.Contains(r.stdout, "pb1: cron entry /etc/cron.d/kbootstrap-etcd-backup (5 4 * * *, after 0s)"+want) {
			t.Fatalf("run %d: exit %d, want %q\n%s\n%s", i+1, r.code, want, r.stdout, r.stderr)
		}
	}
	got := labExecIn(t, l, "pb1", `grep -v '^#' /etc/cron.d/kbootstrap-etcd-backup; stat -c '%a' /var/backups/etcd; test -e /etc/systemd/system/kbootstrap-etcd-backup.timer || echo no-timer`)
	want := "SHELL=/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n" +
		"5 4 * * * root [ -e /etc/kubernetes/manifests/etcd.yaml ] && /usr/local/bin/kbootstrap etcd snapshot save --local --keep 7 /var/backups/etcd/snapshot.db 2>&1 | logger -t kbootstrap-etcd-backup\n" +
		"700\nno-timer\n"
	if got != want {
		t.Errorf("pb1:\n%s\nwant:\n%s", got, want)
	}
	// A kbootstrap that cannot run on the node is refused with the fix.
	bad := writeFile(t, t.TempDir(), "kbootstrap-darwin", "not an ELF binary\n", 0o755)
	r := kbRun(t, nil, "-i", l.InventoryFile, "etcd", "snapshot", "schedule", "--binary", bad)
	if r.code != 2 || !strings.Contains(r.stderr, "pass --binary with a Linux build of kbootstrap") {
		t.Errorf("a foreign binary: exit %d\n%s", r.code, r.stderr)
	}
}
