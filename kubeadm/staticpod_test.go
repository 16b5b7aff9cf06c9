package kubeadm

import (
	"context"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/kbootstrap/kbootstrap/internal/poll"
	"github.com/kbootstrap/kbootstrap/node"
)

const schedulerManifest = `apiVersion: v1
kind: Pod
metadata:
  creationTimestamp: null
  labels:
    component: kube-scheduler
    tier: control-plane
  name: kube-scheduler
  namespace: kube-system
spec:
  containers:
  - command:
    - kube-scheduler
    - --kubeconfig=/etc/kubernetes/scheduler.conf
    image: registry.k8s.io/kube-scheduler:v1.34.4
    name: kube-scheduler
    resources:
      requests:
        cpu: 100m
  hostNetwork: true
  priority: 2000001000
  futureField: {kept: true}
status: {}
`

// TestSetAnnotation: the annotation is set (added, or replaced) and the
// rest of the manifest is the same pod, fields unknown here included; what
// is not a Pod manifest is refused naming the field.
func TestSetAnnotation(t *testing.T) {
	withAnn := strings.Replace(schedulerManifest, "  creationTimestamp: null\n", "  annotations:\n    kbootstrap.io/restarted-at: \"2026-01-01T00:00:00Z\"\n    other: kept\n  creationTimestamp: null\n", 1)
	for _, c := range []struct{ name, in, err string }{
		{name: "no annotations", in: schedulerManifest},
		{name: "annotations", in: withAnn},
		{name: "a Deployment", in: "apiVersion: apps/v1\nkind: Deployment\n", err: "field kind"},
		{name: "metadata a list", in: "kind: Pod\nmetadata: [1]\n", err: "field metadata"},
		{name: "annotations a string", in: "kind: Pod\nmetadata: {annotations: x}\n", err: "field metadata.annotations"},
		{name: "not YAML", in: "kind: [", err: "yaml"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := setAnnotation([]byte(c.in), RestartedAt, "2026-11-30T20:00:00.5Z")
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var before, after map[string]any
			if err := yaml.Unmarshal([]byte(c.in), &before); err != nil {
				t.Fatal(err)
			}
			if err := yaml.Unmarshal(out, &after); err != nil {
				t.Fatal(err)
			}
			ann := after["metadata"].(map[string]any)["annotations"].(map[string]any)
			if ann[RestartedAt] != "2026-11-30T20:00:00.5Z" {
				t.Errorf("annotation %v", ann[RestartedAt])
			}
			delete(ann, RestartedAt)
			if len(ann) == 0 {
				delete(after["metadata"].(map[string]any), "annotations")
			}
			if b := before["metadata"].(map[string]any)["annotations"]; b != nil {
				delete(b.(map[string]any), RestartedAt)
			}
			if !reflect.DeepEqual(before, after) {
				t.Errorf("the rest changed:\n%s", out)
			}
		})
	}
}

// restartNode is a control plane's kubelet as Restart sees it: a stopped
// container is started again in the same pod at once, or (backingOff) not
// at all, until the manifest changes, which makes another pod.
type restartNode struct {
	node.Node
	mu         sync.Mutex
	backingOff bool
	running    map[string]string // container → pod UID
	manifest   []byte
	writes     int
	n          int
}

func (f *restartNode) Run(_ context.Context, cmd string, _ ...node.ExecOption) (node.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case strings.HasPrefix(cmd, "id="): // StopContainer
		id := strings.Trim(strings.Fields(strings.SplitN(cmd, "\n", 2)[0])[0][3:], "'")
		uid := f.running[id]
		delete(f.running, id)
		if !f.backingOff {
			f.n++
			f.running[fmt.Sprintf("c%d", f.n)] = uid
		}
		return node.Result{}, nil
	case strings.Contains(cmd, "io.kubernetes.pod.uid"): // RunningPods
		var b strings.Builder
		for id, uid := range f.running {
			fmt.Fprintf(&b, "%s %s\n", id, uid)
		}
		return node.Result{Stdout: []byte(b.String())}, nil
	}
	return node.Result{}, fmt.Errorf("unexpected %q", cmd)
}

func (f *restartNode) Stat(context.Context, string) (node.FileInfo, error) {
	return node.FileInfo{Mode: 0o600}, nil
}

func (f *restartNode) ReadFile(context.Context, string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.manifest, nil
}

func (f *restartNode) WriteFile(_ context.Context, _ string, r io.Reader, o node.WriteOptions) error {
	b, err := io.ReadAll(r)
	if err != nil || o.Mode != 0o600 {
		return fmt.Errorf("write: %v, mode %o", err, o.Mode)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.manifest, f.writes = b, f.writes+1
	// The kubelet ends the old pod and starts the new one.
	f.running = map[string]string{"new": "pod-2"}
	return nil
}

// TestRestart: a container the kubelet starts again at once is restarted
// without touching the manifest; one it backs off is restarted as a new pod
// (the annotation), and only that pod's container counts.
func TestRestart(t *testing.T) {
	for _, c := range []struct {
		name       string
		backingOff bool
		writes     int
	}{
		{"no back-off", false, 0},
		{"backing off", true, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := &restartNode{backingOff: c.backingOff, running: map[string]string{"old": "pod-1"}, manifest: []byte(schedulerManifest)}
			wait := func(what string, check func(context.Context) error) error {
				return poll.Until(context.Background(), 10*time.Second, 10*time.Millisecond, what, check)
			}
			if err := Restart(context.Background(), f, Scheduler, wait, func(context.Context) error { return nil }); err != nil {
				t.Fatal(err)
			}
			if f.writes != c.writes {
				t.Errorf("manifest written %d times, want %d", f.writes, c.writes)
			}
			if c.backingOff && !strings.Contains(string(f.manifest), RestartedAt) {
				t.Errorf("no %s annotation:\n%s", RestartedAt, f.manifest)
			}
		})
	}
}
