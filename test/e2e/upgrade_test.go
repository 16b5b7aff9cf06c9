package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"k8s.io/kubectl/pkg/util/podutils"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kbootstrap/kbootstrap/kubeadm"
	"github.com/kbootstrap/kbootstrap/test/lab"
)

var upgradeSpec = labSpec{
	id: "upgr", subnet: "10.108.0.0/24", subnet2: "10.109.0.0/24", kubernetes: true, dedicated: true,
	nodes: []lab.NodeSpec{
		{Name: "lb1", Role: "loadbalancer"},
		{Name: "cp1", Role: "control-plane"}, {Name: "cp2", Role: "control-plane"}, {Name: "cp3", Role: "control-plane"},
		{Name: "worker1", Role: "worker"}, {Name: "worker2", Role: "worker"},
	},
}

// previousArtifacts is the lab's previous minor (make
// lab-artifacts-previous): its binaries, images and version, or "" when
// they were not built.
func previousArtifacts() (bin, images, version string) {
	dir := filepath.Join(repoRoot, ".lab", "artifacts-previous")
	v, err := os.ReadFile(filepath.Join(dir, "VERSION"))
	if err != nil {
		return "", "", ""
	}
	if _, err := os.Stat(filepath.Join(dir, "images")); err != nil {
		return "", "", ""
	}
	return filepath.Join(dir, "bin"), filepath.Join(dir, "images"), strings.TrimSpace(string(v))
}

// upgradeArtifacts returns the previous minor's artifacts (previousArtifacts)
// and skips the test when either minor's are missing (fails it in CI, where
// .ci/run builds them first).
func upgradeArtifacts(t *testing.T) (bin, images, version string) {
	t.Helper()
	if artifactsBin() == "" {
		t.Skip("the upstream artifacts are missing: make lab-artifacts")
	}
	bin, images, version = previousArtifacts()
	if version == "" {
		msg := "the previous minor's artifacts are missing: make lab-artifacts-previous"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg) // .ci/run builds them first
		}
		t.Skip(msg)
	}
	return bin, images, version
}

// guarded is a Deployment of 2 pods on the workers (the control planes are
// tainted) with a PodDisruptionBudget that keeps one of them.
const guarded = `apiVersion: apps/v1
kind: Deployment
metadata: {name: guarded, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: guarded}}
  template:
    metadata: {labels: {app: guarded}}
    spec:
      terminationGracePeriodSeconds: 1
      affinity:
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            podAffinityTerm: {topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {app: guarded}}}
      containers:
      - name: pause
        image: %s
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: guarded, namespace: default}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: guarded}}
`

// TestUpgrade forms a cluster of 3 control planes and 2 workers behind lb1
// at the lab's previous minor, installed from the lab's stand-in for
// pkgs.k8s.io (a signed apt repository per minor served from this machine),
// and upgrades it to the lab's version with `kbootstrap upgrade` from the
// next minor's repository (packages held, every node's repository switched),
// while a client polls the API through lb1 every 0.5 s
// (no request may fail) and a Deployment of 2 pods guarded by a
// PodDisruptionBudget (minAvailable 1) keeps a ready pod throughout.
// Refused before any change: a skipped minor, a downgrade, workers before
// the control planes. --dry-run changes nothing. The first run is
// interrupted (SIGTERM) during the second control plane: that node is
// finished, the third untouched; a run of the control planes completes
// them. A kubelet that cannot start on worker1 (from a repository whose
// kubelet is broken, then from --binaries) is put back: worker1 Ready at
// its old version and packages, its repository the old minor's, uncordoned,
// worker2 untouched. A node without the repository is refused. Then the
// whole run finishes and another changes nothing. verify passes before and
// after.
// Afterwards every component runs what the new kubeadm names.
//
// Alone: make test-upgrade, or
//
//	make lab-artifacts lab-artifacts-previous && cd test && go test -count=1 -v -run 'TestUpgrade$' ./e2e/
func TestUpgrade(t *testing.T) {
	prevBin, prevImages, prev := upgradeArtifacts(t)
	start := time.Now()
	uc := upgradeCluster(t, prevBin, prevImages, prev)
	l, dir, inv, kubeconfig, cs, pause := uc.l, uc.dir, uc.inv, uc.kubeconfig, uc.cs, uc.pause
	all := []string{"lb1", "cp1", "cp2", "cp3", "worker1", "worker2"}
	cps, workers := all[1:4], all[4:]
	to := lab.KubernetesVersion
	t.Logf("timing: cluster formed at %s %s after the test started", prev, time.Since(start).Round(time.Second))
	if out, err := hostKubectlStdin(kubeconfig, fmt.Sprintf(guarded, pause), "apply", "-f", "-"); err != nil {
		t.Fatalf("apply the guarded Deployment: %v\n%s", err, out)
	}
	waitUntil(t, "the guarded Deployment rolled out", 3*time.Minute, func() error {
		if out, err := hostKubectl(kubeconfig, "rollout", "status", "deployment/guarded", "--timeout=20s"); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})

	// The cluster works before the upgrade: every check of verify.
	if _, vr := kbVerify(t, inv); vr.code != 0 {
		t.Fatalf("verify at %s: exit %d", prev, vr.code)
	}
	bin := artifactsBin()
	images := filepath.Join(filepath.Dir(bin), "images")
	work := filepath.Join(dir, "upgr.upgrade")
	versions := func() map[string]string {
		t.Helper()
		v := map[string]string{}
		for _, n := range all[1:] {
			v[n] = strings.TrimSpace(mustSh(t, l, n, `kubelet --version | awk '{print $2}'`))
			if strings.HasPrefix(n, "cp") {
				v[n] += " " + strings.TrimSpace(mustSh(t, l, n, `grep -o 'kube-apiserver:v[0-9.]*' /etc/kubernetes/manifests/kube-apiserver.yaml`))
			}
		}
		return v
	}
	untouched := func(what string, before map[string]string) {
		t.Helper()
		if after := versions(); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("%s changed the nodes: %v, was %v", what, after, before)
		}
		for _, n := range all[1:] {
			if out := mustSh(t, l, n, "ls /var/lib/kbootstrap/upgrade 2>/dev/null || true"); strings.TrimSpace(out) != "" {
				t.Errorf("%s left %s on %s", what, out, n)
			}
		}
	}
	before := versions()
	// Installed by prepare-node from the previous minor's repository, held.
	packages := func(n string) string {
		t.Helper()
		return strings.TrimSpace(mustSh(t, l, n, `dpkg-query -W -f='${Package}=${Version} ' kubeadm kubelet kubectl; apt-mark showhold | tr '\n' ' '; grep -o '/v1\.[0-9]*/deb/' /etc/apt/sources.list.d/kubernetes.list`))
	}
	p := strings.TrimPrefix(prev, "v") + "-1.1"
	oldPackages := "kubeadm=" + p + " kubectl=" + p + " kubelet=" + p + " kubeadm kubectl kubelet /" + minor(prev) + "/deb/"
	for _, n := range all[1:] {
		if got := packages(n); got != oldPackages {
			t.Errorf("%s after prepare-node: packages, holds and repository %q, want %q", n, got, oldPackages)
		}
	}

	// Refused before any change, each naming why.
	for _, c := range []struct{ to, want string }{
		{"v1.35.0", "one minor at a time"},
		{"v1.32.0", "downgrade"},
	} {
		r := kbRun(t, nil, "-i", inv, "upgrade", "--to", c.to, "--yes", "--work-dir", work)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) || !strings.Contains(r.stderr, "cp1") {
			t.Errorf("upgrade --to %s: exit %d, want 2 naming cp1 and %q\n%s", c.to, r.code, c.want, r.stderr)
		}
	}
	// From packages: every node's repository is read; one that has none
	// is refused, named with the file.
	labExecIn(t, l, "worker2", "mv /etc/apt/sources.list.d/kubernetes.list /root/kubernetes.list")
	r := kbRun(t, nil, "-i", inv, "upgrade", "--dry-run")
	if r.code != 2 || !strings.Contains(r.stderr, "worker2: ") || !strings.Contains(r.stderr, "/etc/apt/sources.list.d/kubernetes.list") {
		t.Errorf("upgrade --dry-run with worker2's repository gone: exit %d, want 2 naming worker2 and its kubernetes.list\n%s", r.code, r.stderr)
	}
	labExecIn(t, l, "worker2", "mv /root/kubernetes.list /etc/apt/sources.list.d/kubernetes.list")
	r = kbRun(t, nil, "-i", inv, "upgrade", "--dry-run")
	if r.code != 0 {
		t.Fatalf("upgrade --dry-run: exit %d", r.code)
	}
	for _, want := range []string{"stage kubeadm, kubelet, kubectl from " + uc.repo + "/" + lab.AptBase + "/" + minor(to) + "/deb/", "cp1 (control plane, v" + strings.TrimPrefix(prev, "v") + "): drain; API server out of the load balancer; etcd leadership off it; kubeadm upgrade apply " + to,
		"cp2 (control plane", "kubeadm upgrade node", "worker2 (worker", "batch 2"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the plan lacks %q:\n%s", want, r.stdout)
		}
	}
	untouched("refused runs and --dry-run", before)

	// Throughout the upgrade: the API through lb1, and the guarded pods.
	api := pollAPI(t, kubeconfig)
	var minReady atomic.Int64
	minReady.Store(2)
	guard := startPolling(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=guarded"})
		if err != nil {
			return nil // the API poller counts API failures
		}
		n := int64(0)
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && podutils.IsPodReady(&p) {
				n++
			}
		}
		if n < minReady.Load() {
			minReady.Store(n)
		}
		return nil
	})

	// 1. Interrupted during the second control plane.
	var signalled atomic.Bool
	r = kbRunProc(t, nil, func(line string, p *os.Process) {
		if strings.Contains(line, "cp2: ") && signalled.CompareAndSwap(false, true) {
			p.Signal(syscall.SIGTERM)
		}
	}, "-i", inv, "upgrade", "--images", images, "--yes", "--work-dir", work)
	if !signalled.Load() || r.code == 0 || !strings.Contains(r.stderr, "interrupted") {
		t.Fatalf("upgrade interrupted at cp2: signalled %v, exit %d, want an error saying it was interrupted\n%s", signalled.Load(), r.code, r.stderr)
	}
	v := versions()
	for _, n := range []string{"cp1", "cp2"} {
		if v[n] != to+" kube-apiserver:"+to {
			t.Errorf("after the interrupted run: %s runs %q, want %s whole", n, v[n], to)
		}
	}
	if v["cp3"] != before["cp3"] || v["worker1"] != before["worker1"] {
		t.Errorf("after the interrupted run: cp3 %q, worker1 %q changed", v["cp3"], v["worker1"])
	}

	// 2. Workers wait for every control plane.
	r = kbRun(t, nil, "-i", inv, "--host", "worker1", "upgrade", "--yes", "--work-dir", work)
	if r.code != 2 || !strings.Contains(r.stderr, "after every control plane") {
		t.Errorf("upgrade --host worker1 with cp3 not upgraded: exit %d, want 2 saying workers come after every control plane\n%s", r.code, r.stderr)
	}
	// 3. The control planes completed by a second run.
	if r = kbRun(t, nil, "-i", inv, "--role", "control-plane", "upgrade", "--images", images, "--yes", "--work-dir", work); r.code != 0 {
		t.Fatalf("upgrade of the control planes after the interruption: exit %d", r.code)
	}

	// 4. A kubelet that cannot start, on worker1: put back. Its package
	// comes from a repository whose kubelet is broken (--package-repository),
	// then from --binaries holding that kubelet.
	broken := filepath.Join(dir, "broken")
	if err := os.MkdirAll(broken, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"kubeadm", "kubectl"} {
		if err := os.Symlink(filepath.Join(bin, b), filepath.Join(broken, b)); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, broken, "kubelet", "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'Kubernetes "+to+"'; exit 0; fi\necho 'kubelet: cannot start (a broken build)' >&2\nexit 1\n", 0o755)
	if err := lab.AptRepo(context.Background(), filepath.Join(uc.root, "broken"), lab.AptPackages{Version: to, Revision: "1.1", Bin: broken}); err != nil {
		t.Fatal(err)
	}
	for _, src := range [][]string{{"--package-repository", uc.repo + "/broken/" + lab.AptBase}, {"--binaries", broken}} {
		r = kbRun(t, nil, append([]string{"-i", inv, "--host", "worker1", "upgrade", "--images", images, "--yes", "--work-dir", work}, src...)...)
		if r.code != 2 || !strings.Contains(r.stderr, "worker1") || !strings.Contains(r.stderr, "put back") {
			t.Errorf("upgrade of worker1 with a broken kubelet (%s): exit %d, want 2 naming worker1, put back\n%s", src[0], r.code, r.stderr)
		}
		v = versions()
		if v["worker1"] != before["worker1"] || v["worker2"] != before["worker2"] {
			t.Errorf("after the failed worker1 (%s): worker1 %q, worker2 %q, want both %q", src[0], v["worker1"], v["worker2"], before["worker1"])
		}
		if got := packages("worker1"); got != oldPackages {
			t.Errorf("after the failed worker1 (%s): its packages, holds and repository %q, want %q", src[0], got, oldPackages)
		}
	}
	for _, w := range workers {
		n, err := cs.CoreV1().Nodes().Get(context.Background(), w, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if n.Spec.Unschedulable || !kubeadm.NodeReady(n) || n.Status.NodeInfo.KubeletVersion != prev {
			t.Errorf("after the failed worker1: %s unschedulable %v, Ready %v, kubelet %s, want schedulable, Ready, %s", w, n.Spec.Unschedulable, kubeadm.NodeReady(n), n.Status.NodeInfo.KubeletVersion, prev)
		}
	}
	// worker2's binaries were staged by the first run (before any
	// change); nothing else may be there.
	if out := mustSh(t, l, "worker2", "ls -d /var/lib/kbootstrap/upgrade/before-* 2>/dev/null || true"); strings.TrimSpace(out) != "" {
		t.Errorf("worker2 was touched: %s", out)
	}

	// 5. The whole run finishes; another changes nothing.
	if r = kbRun(t, nil, "-i", inv, "upgrade", "--images", images, "--yes", "--work-dir", work); r.code != 0 {
		t.Fatalf("upgrade: exit %d", r.code)
	}
	ok, failed, errs := api.StopLog(t)
	guard.Stop()
	t.Logf("API through lb1 during the upgrade: %d requests, %d failed; fewest ready guarded pods: %d", ok+failed, failed, minReady.Load())
	if failed > 0 {
		t.Errorf("%d API requests through lb1 failed during the upgrade:\n%s", failed, strings.Join(errs, "\n"))
	}
	if minReady.Load() < 1 {
		t.Errorf("the guarded Deployment had %d ready pods at some point, want at least 1 (PodDisruptionBudget minAvailable 1)", minReady.Load())
	}
	// The cluster works after it too.
	if _, vr := kbVerify(t, inv); vr.code != 0 {
		t.Errorf("verify after the upgrade: exit %d", vr.code)
	}
	r = kbRun(t, nil, "-i", inv, "upgrade", "--yes", "--work-dir", work)
	if r.code != 0 || !strings.Contains(r.stdout, "nothing changed") {
		t.Errorf("upgrade of an upgraded cluster: exit %d, want 0 and nothing changed\n%s", r.code, r.stdout)
	}

	// What runs: what the new kubeadm names.
	want := map[string]string{}
	out, err := exec.Command(filepath.Join(bin, "kubeadm"), "config", "images", "list", "--kubernetes-version", to).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range strings.Fields(string(out)) {
		want[ref[strings.LastIndex(ref, "/")+1:strings.LastIndex(ref, ":")]] = ref
	}
	pods, err := cs.CoreV1().Pods("kube-system").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, p := range pods.Items {
		c := p.Spec.Containers[0]
		name := c.Image[strings.LastIndex(c.Image, "/")+1 : strings.LastIndex(c.Image, ":")]
		ref, ok := want[name]
		if !ok {
			continue
		}
		seen[name]++
		if c.Image != ref || !podutils.IsPodReady(&p) {
			t.Errorf("%s (%s): %s, ready %v; want %s, ready", p.Name, p.Spec.NodeName, c.Image, podutils.IsPodReady(&p), ref)
		}
	}
	for name, n := range map[string]int{"kube-apiserver": 3, "kube-controller-manager": 3, "kube-scheduler": 3, "etcd": 3, "kube-proxy": 5, "coredns": 2} {
		if seen[name] != n {
			t.Errorf("%d %s pods, want %d", seen[name], name, n)
		}
	}
	nl, err := cs.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nl.Items {
		if n.Status.NodeInfo.KubeletVersion != to || n.Spec.Unschedulable || !kubeadm.NodeReady(&n) {
			t.Errorf("Node %s: kubelet %s, unschedulable %v, Ready %v; want %s, schedulable, Ready", n.Name, n.Status.NodeInfo.KubeletVersion, n.Spec.Unschedulable, kubeadm.NodeReady(&n), to)
		}
	}
	// Installed from the packages, held, the repositories switched.
	p = strings.TrimPrefix(to, "v") + "-1.1"
	for _, n := range all[1:] {
		if got, want := packages(n), "kubeadm="+p+" kubectl="+p+" kubelet="+p+" kubeadm kubectl kubelet /"+minor(to)+"/deb/"; got != want {
			t.Errorf("%s: packages, holds and repository %q, want %q", n, got, want)
		}
	}
	for _, cp := range cps {
		if n := strings.Fields(mustSh(t, l, cp, "ls -d /etc/kubernetes/tmp/kubeadm-backup-* 2>/dev/null; true")); len(n) > 6 {
			t.Errorf("%s keeps %d kubeadm backups, want at most 3 of each kind: %v", cp, len(n), n)
		}
	}
	t.Logf("timing: TestUpgrade %s", time.Since(start).Round(time.Second))
}

// minor is v1.34 of v1.34.4.
func minor(v string) string { return v[:strings.LastIndex(v, ".")] }

// formedCluster is a cluster of upgradeSpec formed at the previous minor.
type formedCluster struct {
	l                    *lab.Lab
	dir, inv, kubeconfig string
	cs                   kubernetes.Interface
	pause                string // the previous minor's pause image
	// repo is the URL of the lab's apt repositories (lab.AptRepo) of both
	// minors, root the directory it serves.
	repo, root string
}

// upgradeCluster forms the cluster of upgradeSpec (3 control planes behind
// lb1, 2 workers) at the previous minor, its kubeadm, kubelet and kubectl
// installed by prepare-node from the lab's stand-in for pkgs.k8s.io (the
// packages of both minors, served from this machine), and writes the
// inventory of the lab's version (the target) next to it.
func upgradeCluster(t *testing.T, prevBin, prevImages, prev string) formedCluster {
	t.Helper()
	l := labFor(t, upgradeSpec)
	dir := t.TempDir()
	all := []string{"lb1", "cp1", "cp2", "cp3", "worker1", "worker2"}
	root := filepath.Join(dir, "apt")
	if err := lab.AptRepo(context.Background(), root,
		lab.AptPackages{Version: prev, Revision: "1.1", Bin: prevBin},
		lab.AptPackages{Version: lab.KubernetesVersion, Revision: "1.1", Bin: artifactsBin()}); err != nil {
		t.Fatal(err)
	}
	repo, stop, err := l.ServeAptRepo(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	waitSystemd(t, l, all...)
	nodes, err := l.InventoryNodes(true, all...)
	if err != nil {
		t.Fatal(err)
	}
	oldInv := writeFile(t, dir, "old.yaml", l.InventoryYAML(lab.InventorySpec{Name: "upgr", KubernetesVersion: prev, Nodes: nodes}), 0o644)
	inv := writeFile(t, dir, "kbootstrap.yaml", l.InventoryYAML(lab.InventorySpec{Name: "upgr", Nodes: nodes}), 0o644)
	pause := "registry.k8s.io/pause:3.10"
	if r := kbRun(t, nil, "-i", oldInv, "playbook", "run", "prepare-node", "--images", prevImages, "-e", "sandbox_image="+pause, "-e", "package_repository="+repo+"/"+lab.AptBase); r.code != 0 {
		t.Fatalf("prepare-node %s from %s: exit %d", prev, repo, r.code)
	}
	kubeconfig := filepath.Join(dir, "upgr.kubeconfig")
	if r := kbRun(t, nil, "-i", oldInv, "init", "--kubeconfig-out", kubeconfig); r.code != 0 {
		logInitFailure(t, l, []string{"lb1"}, all[1:4])
		t.Fatalf("init %s: exit %d", prev, r.code)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return formedCluster{l: l, dir: dir, inv: inv, kubeconfig: kubeconfig, cs: kubernetes.NewForConfigOrDie(cfg), pause: pause, repo: repo, root: root}
}
