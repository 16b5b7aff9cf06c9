package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

type verifyFinding struct {
	Node, Check, Severity, Message, Time string
	Seconds                              float64
}

type verifyResult struct {
	Findings     []verifyFinding    `json:"findings"`
	Namespace    string             `json:"namespace"`
	GroupSeconds map[string]float64 `json:"groupSeconds"`
	Seconds      float64            `json:"seconds"`
}

// kbVerify runs verify -o json with args and parses its document (stdout
// holds only it: progress goes to stderr).
func kbVerify(t *testing.T, inv string, args ...string) (verifyResult, result) {
	t.Helper()
	r := kbRun(t, nil, append([]string{"-i", inv, "-o", "json", "verify"}, args...)...)
	var v verifyResult
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("verify -o json: exit %d, stdout not a JSON document: %v\n%s", r.code, err, r.stdout)
	}
	if !strings.Contains(r.stderr, "Workload (agnhost on every schedulable node)") {
		t.Errorf("verify: no progress line on stderr:\n%s", r.stderr)
	}
	return v, r
}

func (v verifyResult) get(node, check string) *verifyFinding {
	for i := range v.Findings {
		if v.Findings[i].Node == node && v.Findings[i].Check == check {
			return &v.Findings[i]
		}
	}
	return nil
}

// rolledOut waits up to 3 minutes for a kube-system workload's rollout
// (hostKubectl gives one kubectl 30 s: a DaemonSet on 5 busy nodes takes
// longer).
func rolledOut(t *testing.T, kubeconfig, what string) {
	t.Helper()
	waitUntil(t, what+" rolled out", 3*time.Minute, func() error {
		if out, err := hostKubectl(kubeconfig, "-n", "kube-system", "rollout", "status", what, "--timeout=20s"); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
}

// noVerifyNamespace fails when a namespace of verify is left.
func noVerifyNamespace(t *testing.T, kubeconfig string) {
	t.Helper()
	out, err := hostKubectl(kubeconfig, "get", "namespaces", "-o", "name")
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if strings.Contains(out, "kbootstrap-verify-") {
		t.Errorf("verify left a namespace behind:\n%s", out)
	}
}

// testVerify runs verify on the formed 3+2 cluster of TestInit (kube-router):
// every check passes; then the planted faults are each found on the right
// node with the right check.
func testVerify(t *testing.T, inv, kubeconfig string) {
	nodes := []string{"cp1", "cp2", "cp3", "worker1", "worker2"}
	v, r := kbVerify(t, inv)
	t.Logf("timing: verify on 3+2 nodes %s (its own count %.1fs; per group %v)", r.took.Round(100*time.Millisecond), v.Seconds, v.GroupSeconds)
	if r.code != 0 {
		t.Errorf("verify: exit %d, want 0", r.code)
	}
	perNode := []string{"nodes.ready", "nodes.system-pods", "pod-network.pod-to-pod", "pod-network.node-to-pod",
		"service.clusterip-from-pod", "service.clusterip-from-node", "service.headless", "service.externalname",
		"nodeport.reach", "dns.fqdn", "dns.namespace", "dns.search", "dns.kubernetes-default", "dns.pod-record"}
	for _, n := range nodes {
		for _, c := range perNode {
			f := v.get(n, c)
			if f == nil {
				t.Errorf("verify: no %s finding for %s", c, n)
				continue
			}
			if f.Severity != "ok" {
				t.Errorf("verify: %s %s: %s %s", n, c, f.Severity, f.Message)
			}
			if _, err := time.Parse(time.RFC3339Nano, f.Time); err != nil {
				t.Errorf("verify: %s %s: time %q: %v", n, c, f.Time, err)
			}
		}
		if f := v.get(n, "nodeport.reach"); f != nil && !strings.Contains(f.Message, "from this workstation") {
			t.Errorf("nodeport.reach on %s: %q does not say it was checked from this workstation (the lab routes to the nodes)", n, f.Message)
		}
	}
	for _, c := range []string{"nodes.coredns", "service.endpointslices"} {
		if f := v.get("", c); f == nil || f.Severity != "ok" {
			t.Errorf("verify: %s: %+v", c, f)
		}
	}
	// The policy checks concern the node of their target (ingress) or
	// client (egress) pod.
	var policies []string
	for _, f := range v.Findings {
		if f.Severity != "ok" {
			t.Errorf("verify: %s on %s: %s %s", f.Check, f.Node, f.Severity, f.Message)
		}
		if strings.HasPrefix(f.Check, "networkpolicy.") && slices.Contains(nodes, f.Node) {
			policies = append(policies, f.Check)
		}
	}
	slices.Sort(policies)
	if !slices.Equal(policies, []string{"networkpolicy.allow-by-label", "networkpolicy.default-deny-egress", "networkpolicy.default-deny-ingress"}) {
		t.Errorf("verify: policy findings %v, want default-deny-ingress, allow-by-label and default-deny-egress", policies)
	}
	noVerifyNamespace(t, kubeconfig)

	// Interrupted (SIGINT) once its workload runs, verify stops its checks
	// and still removes its namespace.
	var once sync.Once
	r = kbRunProc(t, nil, func(line string, p *os.Process) {
		if strings.Contains(line, "Workload (agnhost") {
			once.Do(func() { p.Signal(os.Interrupt) })
		}
	}, "-i", inv, "verify", "--checks", "networkpolicy")
	if r.code == 0 || !strings.Contains(r.stdout, "✓ Removing namespace kbootstrap-verify-") {
		t.Errorf("verify interrupted: exit %d, want a failure and its namespace removed", r.code)
	}
	noVerifyNamespace(t, kubeconfig)

	// Fault: CoreDNS scaled to zero.
	kubectl := func(args ...string) {
		t.Helper()
		if out, err := hostKubectl(kubeconfig, args...); err != nil {
			t.Fatalf("kubectl %v: %v: %s", args, err, out)
		}
	}
	kubectl("-n", "kube-system", "scale", "deployment", "coredns", "--replicas=0")
	waitUntil(t, "no CoreDNS pod", time.Minute, func() error {
		out, err := hostKubectl(kubeconfig, "-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns", "-o", "name")
		if err != nil || strings.TrimSpace(out) != "" {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	v, r = kbVerify(t, inv, "--checks", "nodes,dns")
	if r.code != 2 {
		t.Errorf("verify with CoreDNS at zero: exit %d, want 2", r.code)
	}
	if f := v.get("", "nodes.coredns"); f == nil || f.Severity != "fail" || !strings.Contains(f.Message, "kube-system/coredns has no ready replica") {
		t.Errorf("nodes.coredns with CoreDNS at zero: %+v", f)
	}
	for _, n := range nodes {
		for _, c := range []string{"dns.fqdn", "dns.search", "dns.kubernetes-default"} {
			if f := v.get(n, c); f == nil || f.Severity != "fail" || !strings.Contains(f.Message, "CoreDNS") {
				t.Errorf("%s on %s with CoreDNS at zero: %+v", c, n, f)
			}
		}
	}
	noVerifyNamespace(t, kubeconfig)
	kubectl("-n", "kube-system", "scale", "deployment", "coredns", "--replicas=2")
	rolledOut(t, kubeconfig, "deployment/coredns")

	// Fault: kube-proxy gone from worker1 (its DaemonSet keeps off it): a
	// new Service's NodePort fails on worker1 only.
	kubectl("-n", "kube-system", "patch", "daemonset", "kube-proxy", "--type=merge", "-p",
		`{"spec":{"template":{"spec":{"affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"kubernetes.io/hostname","operator":"NotIn","values":["worker1"]}]}]}}}}}}}`)
	// The DaemonSet deletes worker1's pod at once but replaces the other
	// four one at a time: verify must not run while one of them restarts
	// (a new Service's NodePort is refused there until its kube-proxy syncs).
	rolledOut(t, kubeconfig, "daemonset/kube-proxy")
	waitUntil(t, "no kube-proxy on worker1, 4 updated elsewhere", 2*time.Minute, func() error {
		out, err := hostKubectl(kubeconfig, "-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-proxy", "-o", "jsonpath={range .items[*]}{.spec.nodeName} {.status.phase}{\"\\n\"}{end}")
		if err != nil || strings.Contains(out, "worker1") || strings.Count(out, "Running") != 4 {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	v, r = kbVerify(t, inv, "--checks", "nodeport")
	if r.code != 2 {
		t.Errorf("verify without kube-proxy on worker1: exit %d, want 2", r.code)
	}
	for _, n := range nodes {
		f := v.get(n, "nodeport.reach")
		switch {
		case f == nil:
			t.Errorf("nodeport.reach on %s missing", n)
		case n == "worker1" && (f.Severity != "fail" || !strings.Contains(f.Message, "kube-proxy on worker1")):
			t.Errorf("nodeport.reach on worker1 without kube-proxy: %s %s", f.Severity, f.Message)
		case n != "worker1" && f.Severity != "ok":
			t.Errorf("nodeport.reach on %s (kube-proxy there): %s %s", n, f.Severity, f.Message)
		}
	}
	noVerifyNamespace(t, kubeconfig)
	kubectl("-n", "kube-system", "patch", "daemonset", "kube-proxy", "--type=json", "-p", `[{"op":"remove","path":"/spec/template/spec/affinity"}]`)
	rolledOut(t, kubeconfig, "daemonset/kube-proxy")
}
