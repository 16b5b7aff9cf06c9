package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kbootstrap/kbootstrap/test/lab"
)

// resumeSpec is the lab of the resumed kubeadm init: one control plane
// behind a load balancer.
var resumeSpec = labSpec{
	id: "rsume", subnet: "10.73.0.0/24", subnet2: "10.74.0.0/24", kubernetes: true, dedicated: true,
	nodes: []lab.NodeSpec{
		{Name: "lb1", Role: "loadbalancer"}, {Name: "cp1", Role: "control-plane"},
	},
}

// TestInitResume: kubeadm init stops after its control plane came up when
// the load balancer passes no request for a minute (lb1 refuses to reach
// the API servers: the kubeadm phase that first writes through it,
// upload-config, gives up after kubeadm's 1-minute API call timeout).
// kbootstrap runs the phases from wait-control-plane on again and forms the
// cluster in the same run. Then the run-again path: a cluster whose
// kubeadm-config ConfigMap is missing (an init that stopped there in an
// earlier run) is not joined to but resumed by `kbootstrap init`.
//
//	make lab-artifacts && cd test && go test -count=1 -v -run TestInitResume ./e2e/
func TestInitResume(t *testing.T) {
	if artifactsBin() == "" {
		t.Skip("the upstream artifacts are missing: make lab-artifacts")
	}
	l := labFor(t, resumeSpec)
	dir := t.TempDir()
	waitSystemd(t, l, "lb1", "cp1")
	inv := kubernetesInventory(t, l, dir, "kbootstrap.yaml", "resume", "", "lb1", "cp1")
	r := prepareNodes(t, inv)

	// lb1 cannot reach any API server (its connections to port 6443 of
	// other nodes are reset; its own port 6443 stays open) until kbootstrap
	// says that kubeadm init stopped.
	const block = "iptables -I OUTPUT ! -o lo -p tcp --dport 6443 -j REJECT --reject-with tcp-reset"
	labExecIn(t, l, "lb1", block)
	var once sync.Once
	var unblockErr error
	var stoppedAt time.Duration
	start := time.Now()
	kubeconfig := filepath.Join(dir, "resume.kubeconfig")
	ps := watchProcesses(l, []string{"cp1"})
	r = kbRunWatch(t, nil, func(line string) {
		if strings.Contains(line, "kubeadm init stopped in phase") {
			once.Do(func() {
				stoppedAt = time.Since(start)
				_, unblockErr = l.Exec(t.Context(), "lb1", "sh", "-c", strings.Replace(block, "-I", "-D", 1))
			})
		}
	}, "-i", inv, "-v", "init", "--kubeconfig-out", kubeconfig)
	procs, seen := ps.Stop()
	if unblockErr != nil {
		t.Fatalf("lb1: unblocking port 6443: %v", unblockErr)
	}
	if r.code != 0 {
		logInitFailure(t, l, []string{"lb1"}, []string{"cp1"})
		t.Fatalf("init: exit %d", r.code)
	}
	for _, want := range []string{
		"• node cp1: kubeadm init stopped in phase upload-config/kubeadm, after the control plane came up: running its phases from wait-control-plane on again (1 of 2)",
		"✓ Initializing control plane cp1",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("init output lacks %q", want)
		}
	}
	t.Logf("timing: kubeadm init stopped after %s; the whole init, resumed, %s", stoppedAt.Round(time.Second), r.took.Round(time.Second))
	kubectl := "kubectl --kubeconfig /etc/kubernetes/admin.conf "
	cm := func() string {
		return strings.TrimSpace(labExecIn(t, l, "cp1", kubectl+"-n kube-system get configmap kubeadm-config -o name --ignore-not-found"))
	}
	if got := cm(); got != "configmap/kubeadm-config" {
		t.Errorf("after the resumed init: kubeadm-config ConfigMap %q", got)
	}
	// Everything the phases after upload-config do is there.
	checks := map[string]string{
		"the kubeadm-certs Secret (upload-certs)":      kubectl + "-n kube-system get secret kubeadm-certs -o name",
		"the control-plane taint (mark-control-plane)": kubectl + "get node cp1 -o jsonpath='{.spec.taints[*].key}'",
		"the cluster-info ConfigMap (bootstrap-token)": kubectl + "-n kube-public get configmap cluster-info -o name",
		"CoreDNS (addon)":    kubectl + "-n kube-system get deployment coredns -o name",
		"kube-proxy (addon)": kubectl + "-n kube-system get daemonset kube-proxy -o name",
	}
	for what, cmd := range checks {
		if out := strings.TrimSpace(labExecIn(t, l, "cp1", cmd+" 2>&1 || true")); out == "" || strings.Contains(out, "NotFound") {
			t.Errorf("after the resumed init, %s is missing: %s", what, out)
		}
	}
	waitUntil(t, "cp1 Ready through lb1", 2*time.Minute, func() error {
		out, err := hostKubectl(kubeconfig, "get", "node", "cp1", "--no-headers")
		if err != nil || !strings.Contains(out, " Ready ") {
			return fmt.Errorf("cp1 not Ready: %v %s", err, out)
		}
		return nil
	})

	// An earlier run stopped after the control plane came up: admin.conf,
	// no kubeadm-config. join refuses; init resumes; init again is a no-op.
	labExecIn(t, l, "cp1", kubectl+"-n kube-system delete configmap kubeadm-config")
	j := kbRun(t, nil, "-i", inv, "join")
	if j.code == 0 || !strings.Contains(j.stderr, "node cp1: the kubeadm init there did not finish (no kubeadm-config ConfigMap): run kbootstrap init to resume it") {
		t.Errorf("join on an unfinished init: exit %d, not the error that says so", j.code)
	}
	d := kbRun(t, nil, "-i", inv, "init", "--dry-run")
	if d.code != 0 || !strings.Contains(d.stdout, "its kubeadm init stopped after the control plane came up (no kubeadm-config ConfigMap)") {
		t.Errorf("init --dry-run on an unfinished init: exit %d, no plan to resume it", d.code)
	}
	ps = watchProcesses(l, []string{"cp1"})
	r2 := kbRun(t, nil, "-i", inv, "-v", "init", "--kubeconfig-out", kubeconfig)
	procs2, seen2 := ps.Stop()
	if r2.code != 0 || !strings.Contains(r2.stdout, "✓ Resuming kubeadm init on cp1 (no kubeadm-config ConfigMap: it stopped after the control plane came up)") {
		t.Errorf("init on an unfinished init: exit %d, no resume line", r2.code)
	}
	if got := cm(); got != "configmap/kubeadm-config" {
		t.Errorf("after init resumed from the facts: kubeadm-config ConfigMap %q", got)
	}
	r3 := kbRun(t, nil, "-i", inv, "init", "--kubeconfig-out", kubeconfig)
	if r3.code != 0 || !strings.Contains(r3.stdout, "nothing changed") {
		t.Errorf("init again: exit %d, no \"nothing changed\"", r3.code)
	}

	// No token or certificate key in any output, log or process list.
	tokens := tokenRE.FindAllString(labExecIn(t, l, "cp1", "kubeadm token list 2>/dev/null; true"), -1)
	if len(tokens) < 2 {
		t.Errorf("kubeadm token list shows %d tokens, want one per init run", len(tokens))
	}
	known := append(append(tokens, seen...), seen2...)
	if len(seen) < 2 || len(seen2) < 2 {
		t.Errorf("saw %d and %d secrets in /etc/kbootstrap during the two inits: the check below proves little", len(seen), len(seen2))
	}
	for i, res := range []result{r, j, d, r2, r3} {
		checkNoSecrets(t, fmt.Sprintf("run %d stdout", i+1), res.stdout, known)
		checkNoSecrets(t, fmt.Sprintf("run %d stderr (log)", i+1), res.stderr, known)
	}
	checkNoSecrets(t, "process list of cp1 during the inits", procs+procs2, known)
	if out := labExecIn(t, l, "cp1", "ls -A /etc/kbootstrap 2>/dev/null; true"); strings.TrimSpace(out) != "" {
		t.Errorf("cp1: /etc/kbootstrap still holds %s", out)
	}
}
