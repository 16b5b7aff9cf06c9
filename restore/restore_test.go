package restore

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kbootstrap/kbootstrap/etcd"
	"github.com/kbootstrap/kbootstrap/inventory"
)

func testRun(t *testing.T) (*run, *bytes.Buffer) {
	t.Helper()
	var plan bytes.Buffer
	r := &run{o: Options{Plan: &plan, WorkDir: "/tmp/work", FromMember: ""}, res: &Result{Source: "prod.bundle", Token: "kbootstrap-restore-x", Endpoint: "10.0.0.5:6443"},
		initialCluster: "cp1=https://10.0.0.11:2380,cp2=https://10.0.0.12:2380"}
	for i, name := range []string{"cp1", "cp2"} {
		r.cps = append(r.cps, &cp{in: inventory.Node{Name: name}, aside: map[string]bool{},
			member: etcd.ManifestMember{Name: name, PeerURLs: []string{"https://10.0.0.1" + string(rune('1'+i)) + ":2380"}, DataDir: "/var/lib/etcd"}})
	}
	r.others = []inventory.Node{{Name: "worker1"}}
	return r, &plan
}

// The dry run's plan names every node's steps, the data kept and the gate.
func TestPlan(t *testing.T) {
	r, plan := testRun(t)
	r.plan()
	for _, want := range []string{
		"restore prod.bundle onto 2 control planes (endpoint 10.0.0.5:6443), new cluster token kbootstrap-restore-x",
		"cp1: stop kube-apiserver, then etcd (manifests to /etc/kubernetes/kbootstrap-restore)",
		"cp2: move /var/lib/etcd/member aside to /var/lib/etcd/member.kbootstrap-before-<time> (kept); restore the snapshot as member cp2 (https://10.0.0.12:2380), --initial-cluster cp1=https://10.0.0.11:2380,cp2=https://10.0.0.12:2380, revision +1000000000, marked compacted",
		"worker1: restart the kubelet",
		"then: /readyz through 10.0.0.5:6443 and every Node Ready",
	} {
		if !strings.Contains(plan.String(), want+"\n") {
			t.Errorf("plan lacks %q:\n%s", want, plan)
		}
	}
}

// A failure before any data moved says nothing was restored; after, it
// names every member's kept data and how to complete or go back.
func TestFailed(t *testing.T) {
	cause := errors.New("start etcd: boom")
	r, _ := testRun(t)
	err := r.failed(context.Background(), cause)
	if !errors.Is(err, cause) || !strings.Contains(err.Error(), "nothing was restored") {
		t.Errorf("before any data moved: %v", err)
	}
	r.moved.Store(true)
	r.cps[0].restored.Aside = "/var/lib/etcd/member.kbootstrap-before-T"
	err = r.failed(context.Background(), cause)
	msg := err.Error()
	for _, want := range []string{
		"cp1: /var/lib/etcd/member.kbootstrap-before-T is /var/lib/etcd/member before the restore",
		"Run the same restore again to complete it (the snapshot is kept in /tmp/work)",
		"/etc/kubernetes/kbootstrap-restore",
	} {
		if !errors.Is(err, cause) || !strings.Contains(msg, want) {
			t.Errorf("after data moved: %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "cp2:") {
		t.Errorf("cp2's data never moved, yet it is named:\n%s", msg)
	}
}

// The gate wants every Node of the inventory Ready by a status posted after
// its kubelet's restart: a restored Node is Ready by the snapshot's status.
func TestNotReady(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	node := func(name string, ready corev1.ConditionStatus, heartbeat time.Time) corev1.Node {
		return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
			{Type: corev1.NodeReady, Status: ready, LastHeartbeatTime: metav1.NewTime(heartbeat)},
		}}}
	}
	want := map[string]bool{"cp1": true, "worker1": true}
	before := map[string]time.Time{"cp1": t0, "worker1": t0}
	for _, tc := range []struct {
		name  string
		nodes []corev1.Node
		errs  []string
	}{
		{"posted since", []corev1.Node{node("cp1", corev1.ConditionTrue, t0.Add(time.Second)), node("worker1", corev1.ConditionTrue, t0.Add(3*time.Second))}, nil},
		{"a Node outside the inventory is not waited for", []corev1.Node{node("cp1", corev1.ConditionTrue, t0.Add(time.Second)), node("worker1", corev1.ConditionTrue, t0.Add(time.Second)), node("old", corev1.ConditionFalse, t0)}, nil},
		{"Ready by the snapshot's status", []corev1.Node{node("cp1", corev1.ConditionTrue, t0.Add(time.Second)), node("worker1", corev1.ConditionTrue, t0)},
			[]string{"Node worker1 Ready only by the status posted at 2026-11-30T12:00:00Z, before its kubelet's restart"}},
		{"not Ready", []corev1.Node{node("cp1", corev1.ConditionFalse, t0.Add(time.Second)), node("worker1", corev1.ConditionTrue, t0.Add(time.Second))}, []string{"Node cp1 not Ready"}},
		{"missing", []corev1.Node{node("cp1", corev1.ConditionTrue, t0.Add(time.Second))}, []string{"no Node worker1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := notReady(tc.nodes, want, before)
			if len(tc.errs) == 0 {
				if err != nil {
					t.Fatalf("notReady: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("notReady: nil, want %q", tc.errs)
			}
			for _, e := range tc.errs {
				if !strings.Contains(err.Error(), e) {
					t.Errorf("notReady: %v, want %q", err, e)
				}
			}
		})
	}
}
