package verify

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	restclient "k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"
	"sigs.k8s.io/yaml"

	"github.com/kbootstrap/kbootstrap/internal/golden"
	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/report"
)

// The workload and the policies verify creates, as the API receives them.
func TestWorkloadGolden(t *testing.T) {
	ns := NamespacePrefix + "abc123"
	objs := []any{newNamespace(ns),
		newPod(ns, "srv-0", "worker1", AgnhostImage, true),
		newPod(ns, podAllowed, "worker2", AgnhostImage, false, labelClient, "allowed"),
		newPod(ns, podEgress, "cp1", AgnhostImage, false)}
	for _, s := range newServices(ns) {
		objs = append(objs, s)
	}
	objs = append(objs, newDenyIngress(ns), newAllowClient(ns), newDenyEgress(ns), newAllowDNS(ns))
	var buf bytes.Buffer
	for _, o := range objs {
		b, err := yaml.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		buf.WriteString("---\n")
		buf.Write(b)
	}
	golden.Check(t, "workload.yaml", buf.Bytes())
}

func readyNode(name string, ready corev1.ConditionStatus) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready, Reason: "KubeletNotReady", Message: "container runtime network not ready"}},
		NodeInfo:   corev1.NodeSystemInfo{KubeletVersion: "v1.34.4"}}}
}

func sysPod(name, nodeName string, phase corev1.PodPhase, ready corev1.ConditionStatus) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kube-system"}, Spec: corev1.PodSpec{NodeName: nodeName},
		Status: corev1.PodStatus{Phase: phase, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: ready}}}}
}

func find(fs []report.Finding, nodeName, check string) *report.Finding {
	for i := range fs {
		if fs[i].Node == nodeName && fs[i].Check == check {
			return &fs[i]
		}
	}
	return nil
}

func TestCheckNodes(t *testing.T) {
	zero := int32(0)
	cs := fake.NewClientset(
		readyNode("cp1", corev1.ConditionTrue), readyNode("worker1", corev1.ConditionFalse), readyNode("stray", corev1.ConditionTrue),
		sysPod("kube-apiserver-cp1", "cp1", corev1.PodRunning, corev1.ConditionTrue),
		sysPod("kube-proxy-w1", "worker1", corev1.PodPending, corev1.ConditionFalse),
		sysPod("job-done", "worker1", corev1.PodSucceeded, corev1.ConditionFalse),
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "coredns", Namespace: "kube-system"}, Spec: appsv1.DeploymentSpec{Replicas: &zero}},
	)
	r := &run{cs: cs, res: &Result{}}
	for _, n := range []string{"cp1", "worker1", "worker2"} {
		r.members = append(r.members, &member{inv: inventory.Node{Name: n}})
	}
	if err := r.checkNodes(context.Background()); err != nil {
		t.Fatal(err)
	}
	fs := r.res.Findings.Findings
	for _, c := range []struct {
		node, check string
		sev         report.Severity
		msg         string
	}{
		{"cp1", "nodes.ready", report.OK, "Ready, kubelet v1.34.4"},
		{"worker1", "nodes.ready", report.Fail, "NotReady (KubeletNotReady: container runtime network not ready)"},
		{"worker2", "nodes.ready", report.Fail, "not a node of the cluster"},
		{"stray", "nodes.ready", report.Warn, "does not list"},
		{"cp1", "nodes.system-pods", report.OK, "1 kube-system pods"},
		{"worker1", "nodes.system-pods", report.Fail, "kube-system/kube-proxy-w1 Pending"},
		{"", "nodes.coredns", report.Fail, "no ready replica (0 wanted)"},
	} {
		f := find(fs, c.node, c.check)
		if f == nil {
			t.Errorf("no %s finding for %q in %+v", c.check, c.node, fs)
			continue
		}
		if f.Severity != c.sev || !strings.Contains(f.Message, c.msg) || f.Time == "" {
			t.Errorf("%s %s: %s %q (time %q), want %s containing %q", c.node, c.check, f.Severity, f.Message, f.Time, c.sev, c.msg)
		}
	}
	if f := find(fs, "worker1", "nodes.system-pods"); f != nil && strings.Contains(f.Message, "job-done") {
		t.Errorf("a finished pod counted as not running: %s", f.Message)
	}
}

// A policy not enforced says where to look: the inventory's network, and
// kube-router's DaemonSet and its pod on the node.
func TestNetworkHint(t *testing.T) {
	router := func(name, nodeName string, ready corev1.ConditionStatus) *corev1.Pod {
		p := sysPod(name, nodeName, corev1.PodRunning, ready)
		p.Labels = map[string]string{"k8s-app": "kube-router"}
		return p
	}
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "kube-router", Namespace: "kube-system"}}
	for _, tc := range []struct {
		name    string
		network inventory.Network
		objs    []runtime.Object
		want    string
	}{
		{"kube-router ready on the node", inventory.Network{}, []runtime.Object{ds, router("kr-1", "worker1", corev1.ConditionTrue)}, ""},
		{"kube-router's DaemonSet removed", inventory.Network{}, nil, " (DaemonSet kube-system/kube-router, the network that enforces policies, is missing: kbootstrap init applies it again)"},
		{"kube-router not ready on the node", inventory.Network{Plugin: "kube-router"}, []runtime.Object{ds, router("kr-1", "worker1", corev1.ConditionFalse), router("kr-2", "worker2", corev1.ConditionTrue)}, " (no ready pod of DaemonSet kube-system/kube-router on worker1)"},
		{"host-gw", inventory.Network{Plugin: "host-gw"}, nil, " (the inventory's network.plugin host-gw enforces none; kube-router does)"},
		{"a manifest", inventory.Network{Manifest: "flannel.yaml"}, nil, " (the network is the inventory's network.manifest flannel.yaml: does it implement NetworkPolicy?)"},
	} {
		r := &run{cs: fake.NewClientset(tc.objs...), o: Options{Inventory: &inventory.Inventory{Network: tc.network}}}
		if got := r.networkHint(context.Background(), "worker1"); got != tc.want {
			t.Errorf("%s: hint %q, want %q", tc.name, got, tc.want)
		}
	}
}

// dial tells a name that does not resolve (agnhost's 400) from a request
// that got no answer, and returns the first response otherwise.
func TestDialClassifies(t *testing.T) {
	for _, c := range []struct {
		name       string
		status     int
		body       string
		want       string
		wantErr    string
		wantLookup bool
	}{
		{"answer", 200, `{"responses":["srv-1"]}`, "srv-1", "", false},
		{"no answer", 200, `{"errors":["Get \"http://10.244.1.5:8080/hostname\": context deadline exceeded"]}`, "", "context deadline exceeded", false},
		{"lookup", 400, "host and/or port param are invalid. lookup kbv.x.svc.cluster.local on 10.96.0.10:53: no such host", "", "lookup kbv", true},
		{"garbage", 200, "<html>", "", "answer", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cs := fake.NewClientset()
			cs.PrependProxyReactor("pods", func(action k8stesting.Action) (bool, restclient.ResponseWrapper, error) {
				pa := action.(k8stesting.ProxyGetAction)
				if pa.GetName() != "srv-0" || pa.GetPort() != "8080" || pa.GetPath() != "dial" || pa.GetParams()["host"] != "kbv" {
					t.Errorf("proxy to %s:%s/%s %v", pa.GetName(), pa.GetPort(), pa.GetPath(), pa.GetParams())
				}
				return true, &response{status: c.status, body: c.body}, nil
			})
			r := &run{cs: cs, ns: "ns"}
			got, err := r.dial(context.Background(), "srv-0", "kbv", 80, "hostname")
			if got != c.want || (err == nil) != (c.wantErr == "") || err != nil && !strings.Contains(err.Error(), c.wantErr) || errors.Is(err, ErrLookup) != c.wantLookup {
				t.Errorf("dial = %q, %v; want %q, error with %q (lookup %v)", got, err, c.want, c.wantErr, c.wantLookup)
			}
		})
	}
}

// response is a proxied answer for the fake clientset.
type response struct {
	status int
	body   string
}

func (r *response) DoRaw(context.Context) ([]byte, error) {
	if r.status != http.StatusOK {
		return []byte(r.body), apierrors.NewBadRequest("the server rejected our request for an unknown reason")
	}
	return []byte(r.body), nil
}

func (r *response) Stream(context.Context) (io.ReadCloser, error) {
	return nil, errors.New("not streamed")
}

func TestRetryStopsAtDeadline(t *testing.T) {
	calls := 0
	start := time.Now()
	err := retry(context.Background(), 1200*time.Millisecond, func(context.Context) error { calls++; return errors.New("no") })
	if err == nil || calls < 2 || time.Since(start) > 3*time.Second {
		t.Errorf("retry: %v after %d calls in %s", err, calls, time.Since(start))
	}
}

// With Settle, a node still coming up is judged again until it is Ready,
// and only the last judgement is kept.
func TestCheckNodesSettles(t *testing.T) {
	cs := fake.NewClientset(readyNode("cp1", corev1.ConditionFalse),
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "coredns", Namespace: "kube-system"}, Status: appsv1.DeploymentStatus{ReadyReplicas: 1}})
	r := &run{cs: cs, res: &Result{}, o: Options{Settle: 20 * time.Second}}
	r.members = []*member{{inv: inventory.Node{Name: "cp1"}}}
	go func() {
		time.Sleep(time.Second)
		if _, err := cs.CoreV1().Nodes().UpdateStatus(context.Background(), readyNode("cp1", corev1.ConditionTrue), metav1.UpdateOptions{}); err != nil {
			t.Error(err)
		}
	}()
	start := time.Now()
	if err := r.checkNodes(context.Background()); err != nil {
		t.Fatal(err)
	}
	fs := r.res.Findings.Findings
	if f := find(fs, "cp1", "nodes.ready"); f == nil || f.Severity != report.OK || len(fs) != 2 || time.Since(start) > 10*time.Second {
		t.Errorf("after settling: %+v (in %s)", fs, time.Since(start))
	}
	// Without Settle the same NotReady node is a failure at once.
	cs2 := fake.NewClientset(readyNode("cp1", corev1.ConditionFalse))
	r2 := &run{cs: cs2, res: &Result{}, members: r.members}
	if err := r2.checkNodes(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f := find(r2.res.Findings.Findings, "cp1", "nodes.ready"); f == nil || f.Severity != report.Fail {
		t.Errorf("without Settle: %+v", r2.res.Findings.Findings)
	}
}
