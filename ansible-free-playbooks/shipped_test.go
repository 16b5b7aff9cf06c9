package playbooks

import (
	"io/fs"
	"maps"
	"reflect"
	"strings"
	"testing"

	"github.com/kbootstrap/kbootstrap/inventory"
)

// shippedData is what templates see when a shipped playbook runs on the
// first node of a two-control-plane inventory, with extra vars.
func shippedData(t *testing.T, pb *Playbook, extra map[string]string) map[string]any {
	t.Helper()
	inv := testInventory("cp1", "cp2")
	inv.KubernetesVersion = "v1.34.4"
	inv.Nodes = append(inv.Nodes, inventory.Node{Name: "w1", Address: "10.0.0.5", Role: inventory.RoleWorker})
	vars := maps.Clone(pb.Vars)
	for k, v := range extra {
		vars[k] = v
	}
	return map[string]any{
		"vars":       vars,
		"facts":      map[string]any{"init": "systemd", "goarch": "amd64", "os": "debian", "cgroup_driver": "systemd", "restrict_oom_score_adj": "false"},
		"registered": map[string]any{"br_netfilter": map[string]any{"changed": false}, "containerd_config": map[string]any{"changed": false}, "timer_unit": map[string]any{"changed": false}},
		"host":       nodeData(inv.Nodes[0]),
		"inventory":  inventoryData(inv),
		"check":      false,
	}
}

// renderTask renders a task's arguments as Run would; nil when its when is false.
func renderTask(t *testing.T, pb *Playbook, name string, data map[string]any) module {
	t.Helper()
	for _, task := range pb.Tasks {
		if task.Name != name {
			continue
		}
		if task.When != "" {
			s, err := render("when", task.When, data)
			if err != nil {
				t.Fatalf("%s: when: %v", name, err)
			}
			if !truthy(s) {
				return nil
			}
		}
		m := cloneModule(task.args)
		if err := renderStruct(reflect.ValueOf(m), func(s string) (string, error) { return render(task.Module, s, data) }); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := m.validate(asRendered); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return m
	}
	t.Fatalf("%s has no task %q", pb.Name, name)
	return nil
}

func renderFile(t *testing.T, pb *Playbook, file string, data map[string]any) string {
	t.Helper()
	b, err := fs.ReadFile(pb.FS, file)
	if err != nil {
		t.Fatal(err)
	}
	out, err := render(file, string(b), data)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return out
}

func TestShippedPlaybooksOfIssue6Parse(t *testing.T) {
	for name, hosts := range map[string]string{
		"prepare-node": "control-plane,worker",
		"loadbalancer": "loadbalancer",
	} {
		pb, err := Load(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := strings.Join(pb.Hosts, ","); got != hosts {
			t.Errorf("%s: hosts %s, want %s", name, got, hosts)
		}
		if !pb.Become {
			t.Errorf("%s: not become (a vagrant user needs sudo)", name)
		}
		if strings.Contains(pb.Description, "draft") {
			t.Errorf("%s: still a draft: %s", name, pb.Description)
		}
	}
}

func TestPrepareNodeContainerdConfig(t *testing.T) {
	pb, err := Shipped("prepare-node")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		extra map[string]string
		want  []string
	}{
		{nil, []string{`SystemdCgroup = true`, `restrict_oom_score_adj = false`, `sandbox_image = "registry.k8s.io/pause:3.10.1"`, `bin_dir = "/usr/lib/cni"`, "version = 2"}},
		{map[string]string{"cgroup_driver": "cgroupfs", "restrict_oom_score_adj": "true"}, []string{`SystemdCgroup = false`, `restrict_oom_score_adj = true`}},
	} {
		out := renderFile(t, pb, "config.toml.tmpl", shippedData(t, pb, c.extra))
		for _, w := range c.want {
			if !strings.Contains(out, w+"\n") {
				t.Errorf("%v: config.toml lacks %q:\n%s", c.extra, w, out)
			}
		}
	}
}

// The kubelet unit and kubeadm's drop-in are those of the deb packages
// (kubernetes/release, cmd/krel/templates/latest, with /etc/default/kubelet).
func TestPrepareNodeKubeletUnitsAsThePackages(t *testing.T) {
	pb, err := Shipped("prepare-node")
	if err != nil {
		t.Fatal(err)
	}
	data := shippedData(t, pb, map[string]string{"binaries": "/tmp/bin"})
	unit := renderFile(t, pb, "kubelet.service.tmpl", data)
	wantUnit := `[Unit]
Description=kubelet: The Kubernetes Node Agent
Documentation=https://kubernetes.io/docs/
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/usr/bin/kubelet
Restart=always
StartLimitInterval=0
RestartSec=10

[Install]
WantedBy=multi-user.target
`
	if unit != wantUnit {
		t.Errorf("kubelet.service:\n%s\nwant:\n%s", unit, wantUnit)
	}
	dropIn := renderFile(t, pb, "10-kubeadm.conf.tmpl", data)
	for _, w := range []string{
		`Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"`,
		`Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"`,
		"EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env",
		"EnvironmentFile=-/etc/default/kubelet",
		"ExecStart=\nExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS\n",
	} {
		if !strings.Contains(dropIn, w) {
			t.Errorf("10-kubeadm.conf lacks %q:\n%s", w, dropIn)
		}
	}
	if u, ok := renderTask(t, pb, "kubelet unit", data).(*templateModule); !ok || u.Dest != "/usr/lib/systemd/system/kubelet.service" {
		t.Errorf("kubelet unit task: %+v", u)
	}
	if up, ok := renderTask(t, pb, "kubelet binary", data).(*uploadModule); !ok || up.Src != "/tmp/bin/kubelet" || up.Dest != "/usr/bin" {
		t.Errorf("kubelet binary task: %+v", up)
	}
	// Binaries given: no apt repository.
	if m := renderTask(t, pb, "Kubernetes packages", data); m != nil {
		t.Errorf("packages installed although --binaries was given: %+v", m)
	}
	if m := renderTask(t, pb, "vars valid", data); m != nil {
		t.Errorf("valid vars rejected")
	}
	if m := renderTask(t, pb, "vars valid", shippedData(t, pb, map[string]string{"cgroup_driver": "cgroup"})); m == nil {
		t.Errorf("cgroup_driver=cgroup accepted")
	}
}

// Without --binaries: the packages of pkgs.k8s.io, pinned to the inventory's
// version, from the repository of its minor version, as kubernetes.io's
// "Installing kubeadm" says.
func TestPrepareNodeAptRepository(t *testing.T) {
	pb, err := Shipped("prepare-node")
	if err != nil {
		t.Fatal(err)
	}
	m, ok := renderTask(t, pb, "Kubernetes packages", shippedData(t, pb, nil)).(*aptModule)
	if !ok {
		t.Fatal("no apt task without --binaries")
	}
	if got := strings.Join(m.Name, " "); got != "kubelet=1.34.4-1.1 kubeadm=1.34.4-1.1 kubectl=1.34.4-1.1" {
		t.Errorf("packages %s", got)
	}
	r := m.Repo
	if r.URI != "https://pkgs.k8s.io/core:/stable:/v1.34/deb/" || r.Suite != "/" || len(r.Components) != 0 ||
		r.KeyURL != "https://pkgs.k8s.io/core:/stable:/v1.34/deb/Release.key" {
		t.Errorf("repository %+v", r)
	}
	m, _ = renderTask(t, pb, "Kubernetes packages", shippedData(t, pb, map[string]string{"kubernetes_version": "v1.33.2"})).(*aptModule)
	if m.Repo.URI != "https://pkgs.k8s.io/core:/stable:/v1.33/deb/" || m.Name[1] != "kubeadm=1.33.2-1.1" {
		t.Errorf("-e kubernetes_version=v1.33.2: %+v %v", m.Repo, m.Name)
	}
	m, _ = renderTask(t, pb, "Kubernetes packages", shippedData(t, pb, map[string]string{"package_repository": "http://10.0.0.1:8080/k8s"})).(*aptModule)
	if m.Repo.URI != "http://10.0.0.1:8080/k8s/v1.34/deb/" || m.Repo.KeyURL != "http://10.0.0.1:8080/k8s/v1.34/deb/Release.key" {
		t.Errorf("-e package_repository=http://10.0.0.1:8080/k8s: %+v", m.Repo)
	}
	for _, name := range []string{"kubelet binary", "kubelet unit", "images"} {
		if m := renderTask(t, pb, name, shippedData(t, pb, nil)); m != nil {
			t.Errorf("%s runs without --binaries/--images", name)
		}
	}
}
