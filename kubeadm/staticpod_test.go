package kubeadm

import (
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
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
