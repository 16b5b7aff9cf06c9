package e2e

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/kbootstrap/kbootstrap/test/lab"
)

// runtimeSpec is the lab of TestInitRuntimeBroken: one control plane.
var runtimeSpec = labSpec{
	id: "rtbrk", subnet: "10.71.0.0/24", subnet2: "10.72.0.0/24", kubernetes: true, dedicated: true,
	nodes: []lab.NodeSpec{{Name: "cp1", Role: "control-plane"}},
}

// TestInitRuntimeBroken: a node whose container runtime cannot start any
// container (containerd told restrict_oom_score_adj = false where the
// bounding set lacks CAP_SYS_RESOURCE: runc fails with "can't get final
// child's PID from pipe") makes init fail with runc's message while kubeadm
// waits for the control plane, not after kubeadm's 4-minute wait, and leaves
// no kubeadm running; prepare-node with its defaults (the node's facts) then
// fixes containerd, and reset + init form the cluster.
//
//	make lab-artifacts && cd test && go test -count=1 -v -run TestInitRuntimeBroken ./e2e/
func TestInitRuntimeBroken(t *testing.T) {
	if artifactsBin() == "" {
		t.Skip("the upstream artifacts are missing: make lab-artifacts")
	}
	l := labFor(t, runtimeSpec)
	dir := t.TempDir()
	waitSystemd(t, l, "cp1")
	inv := kubernetesInventory(t, l, dir, "kbootstrap.yaml", "rtbrk", "", "cp1")
	images := filepath.Join(filepath.Dir(artifactsBin()), "images")
	if r := kbRun(t, nil, "-i", inv, "playbook", "run", "prepare-node", "--binaries", artifactsBin(), "--images", images,
		"-e", "restrict_oom_score_adj=false"); r.code != 0 {
		t.Fatalf("prepare-node with restrict_oom_score_adj=false: exit %d\n%s", r.code, r.stderr)
	}
	kubeconfig := filepath.Join(dir, "rtbrk.kubeconfig")
	r := kbRun(t, nil, "-i", inv, "init", "--kubeconfig-out", kubeconfig)
	out := r.stdout + r.stderr
	t.Logf("timing: init with a broken runtime failed after %s (kubeadm alone waits 4m0s)", r.took.Round(1e8))
	if r.code != 2 || !strings.Contains(out, "the container runtime cannot start containers") || !strings.Contains(out, "can't get final child's PID from pipe") {
		t.Fatalf("init on a broken runtime: exit %d, want 2 with runc's message\n%s", r.code, out)
	}
	// Stopped while kubeadm waited: kubeadm's own failure of that wait
	// (after 4 minutes) never came.
	if strings.Contains(out, "error execution phase") || !strings.Contains(out, "kubeadm init --config /etc/kbootstrap/kubeadm-init.yaml --upload-certs stopped") {
		t.Errorf("init did not stop kubeadm's wait:\n%s", out)
	}
	if got := labExecIn(t, l, "cp1", "pgrep -x kubeadm || echo none"); strings.TrimSpace(got) != "none" {
		t.Errorf("kubeadm still runs on cp1: %s", got)
	}

	// The node's facts choose restrict_oom_score_adj = true; reset and init.
	if r := prepareNodes(t, inv); !strings.Contains(labExecIn(t, l, "cp1", "cat /etc/containerd/config.toml"), "restrict_oom_score_adj = true") {
		t.Fatalf("prepare-node with its defaults left restrict_oom_score_adj unset\n%s", r.stderr)
	}
	if r := kbRun(t, nil, "-i", inv, "reset", "--yes"); r.code != 0 {
		t.Fatalf("reset: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if r := kbRun(t, nil, "-i", inv, "init", "--kubeconfig-out", kubeconfig); r.code != 0 {
		logInitFailure(t, l, nil, []string{"cp1"})
		t.Fatalf("init after the fix: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}
