package lab

import (
	"strings"
	"testing"
)

// Unit tests of the pure parts; the lab itself is tested for real in lab_test.go.

func TestConfigDefaultsAndValidation(t *testing.T) {
	good, err := Config{Dir: "x", Nodes: []NodeSpec{{Name: "cp1", Role: RoleControlPlane}, {Name: "w1"}}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if good.ID != "lab" || good.Subnet != "10.77.0.0/24" || good.Subnet2 != "10.78.0.0/24" ||
		good.Nodes[1].Role != RoleWorker || len(good.Nodes[1].Networks) != 1 || !strings.HasPrefix(good.Dir, "/") || good.Log == nil {
		t.Errorf("defaults: %+v", good)
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"id too long", Config{ID: "abcdef", Dir: "x"}, "bad ID"},
		{"id with dash", Config{ID: "a-b", Dir: "x"}, "bad ID"},
		{"no dir", Config{}, "Dir is empty"},
		{"bad subnet", Config{Dir: "x", Subnet: "10.77.0.0"}, "bad subnet"},
		{"small subnet", Config{Dir: "x", Subnet: "10.77.0.0/25"}, "too small"},
		{"overlap", Config{Dir: "x", Subnet: "10.77.0.0/16", Subnet2: "10.77.5.0/24"}, "overlap"},
		{"bad name", Config{Dir: "x", Nodes: []NodeSpec{{Name: "CP1"}}}, "bad node name"},
		{"twice", Config{Dir: "x", Nodes: []NodeSpec{{Name: "a"}, {Name: "a"}}}, "listed twice"},
		{"role", Config{Dir: "x", Nodes: []NodeSpec{{Name: "a", Role: "master"}}}, "bad role"},
		{"network", Config{Dir: "x", Nodes: []NodeSpec{{Name: "a", Networks: []int{2}}}}, "bad network"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.cfg.withDefaults(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestNames(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{netnsName("lab", "cp1"), "kb-lab-cp1"},
		{bridgeName("lab", 0), "kblab0"},
		{bridgeName("abcde", 1), "kbabcde1"},
		{vethName("abcde", 999, 1), "kbabcde-999-1"},
		{mountSource("lab", "cp1"), "kblab-lab-cp1"},
		{ruleComment("lab"), "kbootstrap-lab-lab"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
		if strings.HasPrefix(tc.want, "kb") && !strings.HasPrefix(tc.want, "kb-") && !strings.HasPrefix(tc.want, "kblab-") &&
			!strings.HasPrefix(tc.want, "kbootstrap") && len(tc.want) > 15 {
			t.Errorf("interface name %q longer than 15", tc.want)
		}
	}
	// One lab's prefixes never match another lab's names.
	if strings.HasPrefix(netnsName("lab", "x"), netnsPrefix("la")) || strings.HasPrefix(vethName("lab", 1, 0), vethPrefix("la")) ||
		strings.HasPrefix(mountSource("lab", "x"), mountPrefix("la")) {
		t.Error("lab la's prefixes match lab lab's names")
	}
}

func TestHostAddr(t *testing.T) {
	for _, tc := range []struct {
		subnet string
		n      int
		want   string
	}{
		{"10.77.0.0/24", 1, "10.77.0.1"},
		{"10.77.0.0/24", 11, "10.77.0.11"},
		{"10.77.0.0/24", 254, "10.77.0.254"},
		{"10.77.0.0/23", 300, "10.77.1.44"},
		{"10.77.0.0/24", 255, ""},
	} {
		a, err := hostAddr(tc.subnet, tc.n)
		if tc.want == "" {
			if err == nil {
				t.Errorf("hostAddr(%s, %d) = %s, want an error", tc.subnet, tc.n, a)
			}
			continue
		}
		if err != nil || a.String() != tc.want {
			t.Errorf("hostAddr(%s, %d) = %v %v, want %s", tc.subnet, tc.n, a, err, tc.want)
		}
	}
}

func TestInventory(t *testing.T) {
	l := newLab(Config{ID: "lab", Dir: "/r/.lab", Subnet: DefaultSubnet, Subnet2: DefaultSubnet2, Log: discard{}})
	l.nodes = []*nodeState{
		{Name: "cp1", Role: RoleControlPlane, Index: 1, Networks: []int{0}, Addresses: []string{"10.77.0.11"}},
		{Name: "in", Role: RoleWorker, Index: 3, Networks: []int{1}, Addresses: []string{"10.78.0.13"}},
		{Name: "lb1", Role: RoleLoadBalancer, Index: 2, Networks: []int{0, 1}, Addresses: []string{"10.77.0.12", "10.78.0.12"}},
	}
	want := `# Written by the kbootstrap lab "lab" (/r/.lab); rewritten by every lab up.
name: lab
kubernetesVersion: v1.34.4
controlPlaneEndpoint: 10.77.0.12:6443
ssh:
  user: root
  port: 22
  keyFile: "/r/.lab/id_ed25519"
  knownHostsFile: "/r/.lab/known_hosts"
nodes:
  - name: cp1
    address: 10.77.0.11
    internalAddress: 10.77.0.11
    role: control-plane
  - name: lb1
    address: 10.77.0.12
    internalAddress: 10.77.0.12
    role: loadbalancer
  - name: in
    address: 10.78.0.13
    internalAddress: 10.78.0.13
    role: worker
`
	if got := l.inventory(); got != want {
		t.Errorf("inventory:\n%s\nwant:\n%s", got, want)
	}
}

func TestParsers(t *testing.T) {
	if got := unescape(`/a\040b\011c`); got != "/a b\tc" {
		t.Errorf("unescape: %q", got)
	}
	if f := statFields("123 (a (b) c) S 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 999 x"); len(f) < 20 || f[0] != "S" || f[19] != "999" {
		t.Errorf("statFields: %q", f)
	}
	if !loopbackOnly([]byte("nameserver 127.0.0.53\n")) || loopbackOnly([]byte("nameserver 127.0.0.53\nnameserver 10.0.0.2\n")) || loopbackOnly(nil) {
		t.Error("loopbackOnly")
	}
}

func TestKubeadmInitConfig(t *testing.T) {
	with := KubeadmInitConfig("cp1", "10.77.0.12", "10.77.0.11:6443", "00ff")
	without := KubeadmInitConfig("cp1", "10.77.0.12", "10.77.0.11:6443", "")
	if !strings.Contains(with, "kind: InitConfiguration\ncertificateKey: 00ff\nlocalAPIEndpoint:\n  advertiseAddress: 10.77.0.12\n") {
		t.Errorf("with a certificate key:\n%s", with)
	}
	if strings.Contains(without, "certificateKey") || strings.ReplaceAll(with, "certificateKey: 00ff\n", "") != without {
		t.Errorf("without a certificate key:\n%s", without)
	}
	for _, want := range []string{"name: cp1\n", "kubernetesVersion: " + KubernetesVersion + "\n", "controlPlaneEndpoint: 10.77.0.11:6443\n", "cgroupDriver: cgroupfs\n"} {
		if !strings.Contains(with, want) {
			t.Errorf("no %q in:\n%s", want, with)
		}
	}
}
