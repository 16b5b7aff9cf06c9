package inventory

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const good = `name: lab
kubernetesVersion: v1.34.4
controlPlaneEndpoint: 10.77.0.10:6443
podSubnet: 10.244.0.0/16
ssh:
  user: root
  keyFile: id_ed25519
  knownHostsFile: ~/.ssh/known_hosts
nodes:
  - name: cp1
    address: 10.77.0.11
    role: control-plane
  - name: w1
    address: 127.0.0.1
    internalAddress: 10.77.0.21
    role: worker
    ssh: {user: vagrant, port: 2222}
`

func TestParseGood(t *testing.T) {
	inv, err := Parse("/etc/kb/kbootstrap.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if got := inv.SSHFor(inv.Nodes[1]); got.User != "vagrant" || got.Port != 2222 || got.KeyFile != "/etc/kb/id_ed25519" {
		t.Errorf("SSHFor(w1) = %+v", got)
	}
	if got := inv.SSHFor(inv.Nodes[0]); got.User != "root" || got.Port != 22 {
		t.Errorf("SSHFor(cp1) = %+v", got)
	}
	home, _ := os.UserHomeDir()
	if inv.SSH.KnownHostsFile != filepath.Join(home, ".ssh/known_hosts") {
		t.Errorf("knownHostsFile not expanded: %s", inv.SSH.KnownHostsFile)
	}
	if inv.Nodes[0].InternalIP() != "10.77.0.11" || inv.Nodes[1].InternalIP() != "10.77.0.21" {
		t.Errorf("InternalIP wrong")
	}
	if inv.Nodes[1].Line != 13 {
		t.Errorf("w1 line = %d, want 13", inv.Nodes[1].Line)
	}
	if inv.Endpoint() != "10.77.0.10:6443" {
		t.Errorf("Endpoint = %s", inv.Endpoint())
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // substrings, each must appear
	}{
		{"unknown top-level field", "name: x\nfoo: 1\nnodes: [{name: a, address: 1.2.3.4, role: worker}]\n", []string{"f.yaml:2: foo: unknown field"}},
		{"unknown node field", "nodes:\n  - name: a\n    address: 1.2.3.4\n    role: worker\n    adress: 1.2.3.5\n", []string{"f.yaml:5: nodes[0].adress: unknown field"}},
		{"unknown ssh field", "ssh:\n  prot: 22\nnodes: [{name: a, address: 1.2.3.4, role: worker}]\n", []string{"f.yaml:2: ssh.prot: unknown field"}},
		{"bad role", "nodes:\n  - name: a\n    address: 1.2.3.4\n    role: master\n", []string{"f.yaml:4: nodes[0].role: \"master\" is not one of"}},
		{"missing role and address", "nodes:\n  - name: a\n", []string{"nodes[0].address: missing", "nodes[0].role: missing"}},
		{"duplicate name", "nodes:\n  - {name: a, address: 1.2.3.4, role: worker}\n  - {name: a, address: 1.2.3.5, role: worker}\n", []string{"f.yaml:3: nodes[1].name: \"a\" is already the name of nodes[0]"}},
		{"duplicate address", "nodes:\n  - {name: a, address: 1.2.3.4, role: worker}\n  - {name: b, address: 1.2.3.4, role: worker}\n", []string{"nodes[1].address: 1.2.3.4:22 is already the SSH address of nodes[0]"}},
		{"same address other port is fine, same internal is not", "nodes:\n  - {name: a, address: 127.0.0.1, internalAddress: 10.0.0.1, role: worker, ssh: {port: 2222}}\n  - {name: b, address: 127.0.0.1, internalAddress: 10.0.0.1, role: worker, ssh: {port: 2200}}\n", []string{"nodes[1].internalAddress: 10.0.0.1 is already the internal address of nodes[0]"}},
		{"bad port type", "ssh:\n  port: abc\nnodes: [{name: a, address: 1.2.3.4, role: worker}]\n", []string{"f.yaml", "line 2"}},
		{"bad port", "ssh:\n  port: 70000\nnodes: [{name: a, address: 1.2.3.4, role: worker}]\n", []string{"f.yaml:2: ssh.port: 70000 is not a TCP port"}},
		{"bad version", "kubernetesVersion: 1.34\nnodes: [{name: a, address: 1.2.3.4, role: worker}]\n", []string{"f.yaml:1: kubernetesVersion"}},
		{"bad endpoint", "controlPlaneEndpoint: nope\nnodes: [{name: a, address: 1.2.3.4, role: worker}]\n", []string{"f.yaml:1: controlPlaneEndpoint"}},
		{"bad cidr", "podSubnet: 10.0.0.0/33\nnodes: [{name: a, address: 1.2.3.4, role: worker}]\n", []string{"f.yaml:1: podSubnet"}},
		{"bad internal", "nodes:\n  - {name: a, address: 1.2.3.4, internalAddress: host.example, role: worker}\n", []string{"nodes[0].internalAddress: \"host.example\" is not an IP address"}},
		{"bad name", "nodes:\n  - {name: CP_1, address: 1.2.3.4, role: worker}\n", []string{"nodes[0].name: \"CP_1\" is not a valid node name"}},
		{"no nodes", "name: x\n", []string{"nodes: at least one node is required"}},
		{"empty", "", []string{"f.yaml"}},
		{"bastion without address", "ssh:\n  bastion: {user: jump}\nnodes: [{name: a, address: 1.2.3.4, role: worker}]\n", []string{"f.yaml:2: ssh.bastion.address: missing"}},
		{"plugin and manifest", "network: {plugin: host-gw, manifest: x.yaml}\nnodes: [{name: a, address: 1.2.3.4, role: worker}]\n", []string{"f.yaml:1: network: give either"}},
		{"bad validity", "certificateValidity: 1y\nnodes: [{name: a, address: 1.2.3.4, role: worker}]\n", []string{"f.yaml:1: certificateValidity"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestFieldErrorIsMatchable(t *testing.T) {
	_, err := Parse("f.yaml", []byte("nodes:\n  - {name: a, address: 1.2.3.4, role: boss}\n"))
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "nodes[0].role" || fe.Line != 2 || fe.File != "f.yaml" {
		t.Fatalf("errors.As FieldError: %#v", fe)
	}
}

func TestSelect(t *testing.T) {
	inv, err := Parse("f.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	got, err := inv.Select(Selector{Roles: []Role{RoleWorker}})
	if err != nil || len(got) != 1 || got[0].Name != "w1" {
		t.Errorf("Select(worker) = %v, %v", got, err)
	}
	if _, err := inv.Select(Selector{Hosts: []string{"nope"}}); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown host: %v", err)
	}
	got, _ = inv.Select(Selector{Hosts: []string{"cp1"}})
	if len(got) != 1 || got[0].Name != "cp1" {
		t.Errorf("Select(cp1) = %v", got)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "none.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("want ErrNotExist, got %v", err)
	}
}

// TestEndpointRule: one endpoint rule for every command, with and without a
// load balancer and controlPlaneEndpoint.
func TestEndpointRule(t *testing.T) {
	cp := func(name, ip string) Node {
		return Node{Name: name, Address: "192.168.0.1", InternalAddress: ip, Role: RoleControlPlane}
	}
	lb := Node{Name: "lb1", Address: "10.0.0.9", Role: RoleLoadBalancer}
	w := Node{Name: "w1", Address: "10.0.0.20", Role: RoleWorker}
	for _, tc := range []struct {
		name string
		inv  Inventory
		want string
	}{
		{"controlPlaneEndpoint wins over a load balancer", Inventory{ControlPlaneEndpoint: "api.example:443", Nodes: []Node{cp("cp1", "10.0.0.11"), lb}}, "api.example:443"},
		{"a load balancer and no controlPlaneEndpoint", Inventory{Nodes: []Node{w, cp("cp1", "10.0.0.11"), lb, {Name: "lb2", Address: "10.0.0.8", Role: RoleLoadBalancer}}}, "10.0.0.9:6443"},
		{"the first control plane's internal address", Inventory{Nodes: []Node{w, cp("cp1", "10.0.0.11"), cp("cp2", "10.0.0.12")}}, "10.0.0.11:6443"},
		{"IPv6", Inventory{Nodes: []Node{cp("cp1", "fd00::11")}}, "[fd00::11]:6443"},
		{"no control plane", Inventory{Nodes: []Node{w}}, ""},
	} {
		if got := tc.inv.Endpoint(); got != tc.want {
			t.Errorf("%s: Endpoint() = %q, want %q", tc.name, got, tc.want)
		}
	}
}
