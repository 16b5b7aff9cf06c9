package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kbootstrap/kbootstrap/test/lab"
)

// testPolicyEnforced checks NetworkPolicy enforcement itself, not through
// verify: a client on worker1 reaches a server on worker2; a
// default-deny-ingress on the server blocks it; an allow rule by the client's
// label lets it in again, and another client stays out; a rule by namespace
// label lets a pod of that namespace in; an ipBlock rule (0.0.0.0/0 except
// one pod's address) lets a third pod in and keeps that one out.
func testPolicyEnforced(t *testing.T, kubeconfig string) {
	manifest := `apiVersion: v1
kind: Namespace
metadata: {name: np-e2e}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: np-e2e, labels: {app: server}}
spec:
  nodeName: worker2
  containers: [{name: a, image: registry.k8s.io/e2e-test-images/agnhost:2.56, args: [netexec, --http-port=8080, --udp-port=-1]}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: np-e2e, labels: {role: client}}
spec:
  nodeName: worker1
  containers: [{name: a, image: registry.k8s.io/e2e-test-images/agnhost:2.56, args: [pause]}]
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: np-e2e}
spec:
  nodeName: worker1
  containers: [{name: a, image: registry.k8s.io/e2e-test-images/agnhost:2.56, args: [pause]}]
---
apiVersion: v1
kind: Pod
metadata: {name: third, namespace: np-e2e}
spec:
  nodeName: cp1
  tolerations: [{operator: Exists}]
  containers: [{name: a, image: registry.k8s.io/e2e-test-images/agnhost:2.56, args: [pause]}]
---
apiVersion: v1
kind: Namespace
metadata: {name: np-e2e-peer, labels: {team: peer}}
---
apiVersion: v1
kind: Pod
metadata: {name: peer, namespace: np-e2e-peer}
spec:
  nodeName: worker1
  containers: [{name: a, image: registry.k8s.io/e2e-test-images/agnhost:2.56, args: [pause]}]
`
	if out, err := hostKubectlStdin(kubeconfig, manifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	defer hostKubectl(kubeconfig, "delete", "namespace", "np-e2e", "np-e2e-peer", "--wait=false")
	for _, ns := range []string{"np-e2e", "np-e2e-peer"} {
		if out, err := hostKubectl(kubeconfig, "-n", ns, "wait", "--for=condition=Ready", "pod", "--all", "--timeout=2m"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	ip, err := hostKubectl(kubeconfig, "-n", "np-e2e", "get", "pod", "server", "-o", "jsonpath={.status.podIP}")
	if err != nil || ip == "" {
		t.Fatalf("server's IP: %v %q", err, ip)
	}
	connect := func(from string) error {
		ns := "np-e2e"
		if from == "peer" {
			ns = "np-e2e-peer"
		}
		out, err := hostKubectl(kubeconfig, "-n", ns, "exec", from, "--", "/agnhost", "connect", ip+":8080", "--timeout=2s")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	if err := connect("client"); err != nil {
		t.Fatalf("client to server with no policy: %v", err)
	}
	deny := `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny-ingress, namespace: np-e2e}
spec: {podSelector: {}, policyTypes: [Ingress]}
`
	if out, err := hostKubectlStdin(kubeconfig, deny, "apply", "-f", "-"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	waitUntil(t, "default-deny-ingress blocks the client", 30*time.Second, func() error {
		if connect("client") == nil {
			return fmt.Errorf("the client still reaches the server")
		}
		return nil
	})
	allow := `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-client, namespace: np-e2e}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress: [{from: [{podSelector: {matchLabels: {role: client}}}], ports: [{port: 8080}]}]
`
	if out, err := hostKubectlStdin(kubeconfig, allow, "apply", "-f", "-"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	waitUntil(t, "the allow rule lets the labelled client in", 30*time.Second, func() error { return connect("client") })
	for _, p := range []string{"other", "third", "peer"} {
		if connect(p) == nil {
			t.Errorf("pod %s (without the label) reaches the server past default-deny-ingress", p)
		}
	}

	otherIP, err := hostKubectl(kubeconfig, "-n", "np-e2e", "get", "pod", "other", "-o", "jsonpath={.status.podIP}")
	if err != nil || otherIP == "" {
		t.Fatalf("other's IP: %v %q", err, otherIP)
	}
	more := fmt.Sprintf(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-peer-namespace, namespace: np-e2e}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {team: peer}}}], ports: [{protocol: TCP, port: 8080}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-ipblock, namespace: np-e2e}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/0, except: [%s/32]}}]}]
`, otherIP)
	if out, err := hostKubectlStdin(kubeconfig, more, "apply", "-f", "-"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	waitUntil(t, "the namespace rule lets the peer namespace's pod in", 30*time.Second, func() error { return connect("peer") })
	waitUntil(t, "the ipBlock rule lets the third pod in", 30*time.Second, func() error { return connect("third") })
	if connect("other") == nil {
		t.Errorf("pod other reaches the server though the ipBlock rule excepts its address %s", otherIP)
	}
}

// testReboot stops and starts worker1 (its reboot) and checks that, within
// two minutes and without kbootstrap changing anything, its pods, Services
// and policies work again: verify passes on it.
func testReboot(t *testing.T, l *lab.Lab, inv string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := l.Stop(ctx, "worker1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Start(ctx, "worker1"); err != nil {
		t.Fatal(err)
	}
	// A passing verify proves the network worked by the time its checks
	// ended (before its namespace's removal; its own workload, waiting for
	// worker1 Ready again and its pod running, is part of it): that must be
	// within 2 minutes of the start.
	start := time.Now()
	var last string
	for time.Since(start) < 2*time.Minute {
		v, r := kbVerify(t, inv, "--checks", "pod-network,service,networkpolicy")
		took := time.Since(start) - time.Duration(v.GroupSeconds["cleanup"]*float64(time.Second))
		if r.code == 0 && took <= 2*time.Minute {
			t.Logf("timing: worker1's pods, Services and policies proved working %s after its start (verify's workload %.1fs)", took.Round(time.Second), v.GroupSeconds["workload"])
			return
		}
		var failed []string
		for _, f := range v.Findings {
			if f.Severity == "fail" {
				failed = append(failed, f.Node+" "+f.Check+": "+f.Message)
			}
		}
		last = strings.Join(failed, "\n")
		if r.code == 0 {
			last = fmt.Sprintf("verify passed, its checks ending %s after the start", took.Round(time.Second))
		}
	}
	t.Errorf("worker1 not working within 2 minutes of its start:\n%s", last)
}

// testNetworkFaults: with kube-router's DaemonSet removed, the policies
// verify creates are not enforced, and verify says where to look; with it
// gone, worker1's route to worker2's pod CIDR removed (nothing puts it back)
// fails the pod network on worker1, naming worker2's pod and the route.
// `init` applies kube-router again, which puts the route back by itself, and
// verify passes.
func testNetworkFaults(t *testing.T, l *lab.Lab, inv, kubeconfig string) {
	if out, err := hostKubectl(kubeconfig, "-n", "kube-system", "delete", "daemonset", "kube-router", "--wait"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	waitUntil(t, "no kube-router pod", time.Minute, func() error {
		out, err := hostKubectl(kubeconfig, "-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-router", "-o", "name")
		if err != nil || strings.TrimSpace(out) != "" {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	cidr, err := hostKubectl(kubeconfig, "get", "node", "worker2", "-o", "jsonpath={.spec.podCIDR}")
	if err != nil || cidr == "" {
		t.Fatalf("worker2's podCIDR: %v %q", err, cidr)
	}
	w2, _ := l.Node("worker2")
	if out := labExecIn(t, l, "worker1", "ip -4 route show exact "+cidr); !strings.Contains(out, "via "+w2.Addresses[0]+" ") {
		t.Fatalf("worker1 has no route to worker2's %s through worker2: %q", cidr, out)
	}
	// The policies first, with every route in place (without worker1's
	// route, its pods may not even reach CoreDNS on worker2).
	v, r := kbVerify(t, inv, "--checks", "networkpolicy")
	if r.code != 2 {
		t.Errorf("verify without kube-router: exit %d, want 2", r.code)
	}
	var policies []string
	for _, f := range v.Findings {
		if strings.HasPrefix(f.Check, "networkpolicy.default-deny-") {
			policies = append(policies, f.Check)
			if f.Severity != "fail" || !strings.Contains(f.Message, "NetworkPolicy is not enforced by this cluster's network") || !strings.Contains(f.Message, "DaemonSet kube-system/kube-router, the network that enforces policies, is missing") {
				t.Errorf("%s on %s without kube-router: %s %s", f.Check, f.Node, f.Severity, f.Message)
			}
		}
	}
	slices.Sort(policies)
	if !slices.Equal(policies, []string{"networkpolicy.default-deny-egress", "networkpolicy.default-deny-ingress"}) {
		t.Errorf("verify without kube-router: default-deny findings %v, want ingress and egress", policies)
	}
	noVerifyNamespace(t, kubeconfig)
	labExecIn(t, l, "worker1", "ip -4 route del "+cidr)
	v, r = kbVerify(t, inv, "--checks", "pod-network")
	if r.code != 2 {
		t.Errorf("verify without worker1's route to worker2: exit %d, want 2", r.code)
	}
	if f := v.get("worker1", "pod-network.pod-to-pod"); f == nil || f.Severity != "fail" || !strings.Contains(f.Message, "on worker2") {
		t.Errorf("pod-network.pod-to-pod on worker1 without its route to worker2: %+v", f)
	}
	if f := v.get("worker1", "pod-network.node-to-pod"); f == nil || f.Severity != "fail" || !strings.Contains(f.Message, "on worker2") || !strings.Contains(f.Message, "its route: ") {
		t.Errorf("pod-network.node-to-pod on worker1 without its route to worker2: %+v", f)
	}
	for _, n := range []string{"cp1", "cp2", "cp3"} {
		if f := v.get(n, "pod-network.pod-to-pod"); f == nil || f.Severity != "ok" {
			t.Errorf("pod-network.pod-to-pod on %s (its routes intact): %+v", n, f)
		}
	}
	noVerifyNamespace(t, kubeconfig)

	r = kbRun(t, nil, "-i", inv, "init", "--skip-phases", "verify", "--kubeconfig-out", kubeconfig)
	if r.code != 0 || !strings.Contains(r.stdout, "✓ Applying kube-router") {
		t.Fatalf("init after kube-router's removal: exit %d", r.code)
	}
	waitUntil(t, "kube-router puts worker1's route to worker2 back", time.Minute, func() error {
		if out := labExecIn(t, l, "worker1", "ip -4 route show exact "+cidr); !strings.Contains(out, "via "+w2.Addresses[0]+" ") {
			return fmt.Errorf("route to %s: %q", cidr, out)
		}
		return nil
	})
	if v, r := kbVerify(t, inv, "--checks", "pod-network,networkpolicy"); r.code != 0 {
		t.Errorf("verify after init applied kube-router again: exit %d: %+v", r.code, v.Findings)
	}
}
