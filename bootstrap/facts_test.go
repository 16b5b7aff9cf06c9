package bootstrap

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kbootstrap/kbootstrap/inventory"
)

func TestPreflight(t *testing.T) {
	inv := &inventory.Inventory{Name: "lab", KubernetesVersion: "v1.34.4", Nodes: []inventory.Node{
		{Name: "cp1", Role: inventory.RoleControlPlane}, {Name: "cp2", Role: inventory.RoleControlPlane},
		{Name: "worker1", Role: inventory.RoleWorker}, {Name: "lb1", Role: inventory.RoleLoadBalancer},
	}}
	good := func(name string) *Facts {
		return &Facts{Node: name, KubeadmVersion: "v1.34.4", KubeletVersion: "v1.34.4", RuntimeUp: true}
	}
	for _, tc := range []struct {
		name  string
		edit  func(map[string]*Facts)
		wants []string
	}{
		{"ok", func(map[string]*Facts) {}, nil},
		{"versions", func(f map[string]*Facts) {
			f["cp2"].KubeadmVersion = "v1.33.0"
			f["worker1"].KubeletVersion = ""
		}, []string{"node cp2: kubeadm is v1.33.0, the inventory's kubernetesVersion is v1.34.4", "node worker1: kubelet is not installed"}},
		{"runtime and ports", func(f map[string]*Facts) {
			f["cp1"].RuntimeUp = false
			f["cp2"].ListeningPorts = []int{22, 2379}
			f["worker1"].ListeningPorts = []int{6443}
		}, []string{"node cp1: containerd is not running", "node cp2: port 2379 is in use"}},
		{"skew", func(f map[string]*Facts) { f["worker1"].ClockOffset = 45 * time.Second }, []string{"node worker1: clock is 45s ahead"}},
		{"joined elsewhere", func(f map[string]*Facts) { f["worker1"].Joined = true }, []string{"node worker1: has /etc/kubernetes/kubelet.conf but is no Node"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			facts := map[string]*Facts{}
			for _, n := range inv.Nodes {
				facts[n.Name] = good(n.Name)
			}
			tc.edit(facts)
			var todo []inventory.Node
			for _, n := range inv.Nodes {
				if n.Role != inventory.RoleLoadBalancer {
					todo = append(todo, n)
				}
			}
			errs := preflight(inv, facts, todo)
			var msgs []string
			for _, e := range errs {
				msgs = append(msgs, e.Error())
			}
			all := strings.Join(msgs, "\n")
			if len(tc.wants) == 0 && len(errs) > 0 {
				t.Fatalf("unexpected: %s", all)
			}
			for _, w := range tc.wants {
				if !strings.Contains(all, w) {
					t.Errorf("no %q in:\n%s", w, all)
				}
			}
			if tc.name == "runtime and ports" && strings.Contains(all, "worker1: port 6443") {
				t.Error("6443 checked on a worker")
			}
		})
	}
}

func TestParseNodes(t *testing.T) {
	nodes, err := parseNodes([]byte(`{"items":[{"metadata":{"name":"cp1"},"spec":{"podCIDR":"10.244.0.0/24"},"status":{"conditions":[{"type":"Ready","status":"True"}],"addresses":[{"type":"InternalIP","address":"10.0.0.1"}]}},{"metadata":{"name":"w1"},"spec":{},"status":{"conditions":[{"type":"Ready","status":"False"}]}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if n := nodes["cp1"]; !n.Ready || n.PodCIDR != "10.244.0.0/24" || n.InternalIP != "10.0.0.1" {
		t.Errorf("cp1 = %+v", n)
	}
	if n := nodes["w1"]; n.Ready || n.PodCIDR != "" {
		t.Errorf("w1 = %+v", n)
	}
}

func TestResetAsks(t *testing.T) {
	var prompt strings.Builder
	err := Reset(t.Context(), ResetOptions{
		Inventory: &inventory.Inventory{}, Nodes: []inventory.Node{{Name: "cp2", Role: inventory.RoleControlPlane}},
		In: strings.NewReader("n\n"), Prompt: &prompt,
	})
	if err != ErrNotConfirmed || !strings.Contains(prompt.String(), "Reset cp2?") {
		t.Errorf("err %v, prompt %q", err, prompt.String())
	}
}

// TestParseNodesRefusesABadPodCIDR: a podCIDR from the API (which anyone
// who may edit Nodes can set) is parsed as a CIDR before it goes into a
// root script on every node (security review, finding 9).
func TestParseNodesRefusesABadPodCIDR(t *testing.T) {
	for _, bad := range []string{"10.244.1.0/24; touch /tmp/pwned", "$(reboot)", "10.244.1.0", "not-a-cidr/24"} {
		raw, _ := json.Marshal(map[string]any{"items": []any{map[string]any{"metadata": map[string]any{"name": "w1"}, "spec": map[string]any{"podCIDR": bad}}}})
		if _, err := parseNodes(raw); err == nil || !strings.Contains(err.Error(), "node w1: spec.podCIDR") {
			t.Errorf("podCIDR %q: err = %v, want one naming node w1 and spec.podCIDR", bad, err)
		}
	}
	raw := []byte(`{"items":[{"metadata":{"name":"w1"},"spec":{"podCIDR":"fd00:10:244:1::/64"}}]}`)
	if n, err := parseNodes(raw); err != nil || n["w1"].PodCIDR != "fd00:10:244:1::/64" {
		t.Errorf("IPv6 podCIDR: %v %v", n, err)
	}
}
