package lab

import (
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
)

// Roles a node can have; they end up in the inventory.
const (
	RoleControlPlane = "control-plane"
	RoleWorker       = "worker"
	RoleLoadBalancer = "loadbalancer"
)

// Defaults used when a Config field is empty.
const (
	DefaultID      = "lab"
	DefaultSubnet  = "10.77.0.0/24"
	DefaultSubnet2 = "10.78.0.0/24"

	// KubernetesVersion is written to the inventory.
	KubernetesVersion = "v1.34.4"

	// firstHost is the host number of the first node in a subnet (.11); the host (bridge) is .1.
	firstHost = 11
)

// NodeSpec describes one node of a lab.
type NodeSpec struct {
	Name string
	Role string // control-plane | worker | loadbalancer
	// Networks the node is attached to, in the order of its interfaces (eth0, eth1):
	// 0 = main bridge, 1 = second bridge. Default [0].
	Networks []int
}

// Config describes a lab. Zero values take the defaults documented on each field.
type Config struct {
	// ID is short, [a-z0-9]{1,5}, default "lab". Names of namespaces, links, bridges, mounts and
	// iptables rules derive from it, so labs with different IDs never touch each other.
	ID string
	// Dir is the state directory (e.g. <repo>/.lab or a test's temp dir). Required.
	Dir string
	// Subnet of the main bridge, default 10.77.0.0/24; the host is .1, nodes start at .11.
	Subnet string
	// Subnet2 of the second bridge (no host address), default 10.78.0.0/24.
	Subnet2 string
	Nodes   []NodeSpec
	// ArtifactsDir, when set, is bind-mounted read-only at /opt/kbootstrap/bin in every node. When
	// empty, the first existing of $KBOOTSTRAP_LAB_ARTIFACTS, <Dir>/artifacts/bin and
	// <repository root>/.lab/artifacts/bin is used.
	ArtifactsDir string
	// Log receives one line per lab step with its duration. Default: discarded.
	Log io.Writer `json:"-"`
	// Kubernetes makes nodes that can run a kubelet, like a Vagrant box before kubeadm: the rootfs
	// adds systemd, containerd, runc, the CNI plugins, iptables, conntrack, socat, ethtool,
	// ebtables, haproxy and dnsutils; systemd is PID 1 (instead of tini running sshd); each node
	// gets a cgroup of its own in every hierarchy and a cgroup namespace, /sys/fs/cgroup mounted
	// inside, host directories at /var/lib/{containerd,kubelet,etcd}, a read-only /proc/sys except
	// /proc/sys/net, and shields over the sysctls the kubelet sets. See the package documentation.
	Kubernetes bool
}

var (
	idRE   = regexp.MustCompile(`^[a-z0-9]{1,5}$`)
	nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`)
)

// withDefaults returns a copy of c with defaults filled in, or an error naming the bad field.
func (c Config) withDefaults() (Config, error) {
	if c.ID == "" {
		c.ID = DefaultID
	}
	if !idRE.MatchString(c.ID) {
		return c, fmt.Errorf("lab: bad ID %q: want [a-z0-9]{1,5}", c.ID)
	}
	if c.Dir == "" {
		return c, fmt.Errorf("lab: Config.Dir is empty")
	}
	dir, err := filepath.Abs(c.Dir)
	if err != nil {
		return c, fmt.Errorf("lab: %w", err)
	}
	c.Dir = dir
	if c.Subnet == "" {
		c.Subnet = DefaultSubnet
	}
	if c.Subnet2 == "" {
		c.Subnet2 = DefaultSubnet2
	}
	p1, err := parseSubnet(c.Subnet)
	if err != nil {
		return c, err
	}
	p2, err := parseSubnet(c.Subnet2)
	if err != nil {
		return c, err
	}
	if p1.Overlaps(p2) {
		return c, fmt.Errorf("lab: Subnet %s and Subnet2 %s overlap", c.Subnet, c.Subnet2)
	}
	if c.ArtifactsDir != "" {
		if c.ArtifactsDir, err = filepath.Abs(c.ArtifactsDir); err != nil {
			return c, fmt.Errorf("lab: %w", err)
		}
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	nodes := make([]NodeSpec, len(c.Nodes))
	seen := map[string]bool{}
	for i, n := range c.Nodes {
		if !nameRE.MatchString(n.Name) {
			return c, fmt.Errorf("lab: bad node name %q: want a hostname label [a-z0-9-], at most 32 characters", n.Name)
		}
		if seen[n.Name] {
			return c, fmt.Errorf("lab: node %s listed twice", n.Name)
		}
		seen[n.Name] = true
		if n.Role == "" {
			n.Role = RoleWorker
		}
		switch n.Role {
		case RoleControlPlane, RoleWorker, RoleLoadBalancer:
		default:
			return c, fmt.Errorf("lab: node %s: bad role %q: want control-plane, worker or loadbalancer", n.Name, n.Role)
		}
		if len(n.Networks) == 0 {
			n.Networks = []int{0}
		}
		nets := map[int]bool{}
		for _, k := range n.Networks {
			if k != 0 && k != 1 {
				return c, fmt.Errorf("lab: node %s: bad network %d: want 0 (main bridge) or 1 (second bridge)", n.Name, k)
			}
			if nets[k] {
				return c, fmt.Errorf("lab: node %s: network %d listed twice", n.Name, k)
			}
			nets[k] = true
		}
		n.Networks = append([]int(nil), n.Networks...)
		nodes[i] = n
	}
	c.Nodes = nodes
	return c, nil
}

func parseSubnet(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() {
		return p, fmt.Errorf("lab: bad subnet %q: want an IPv4 CIDR such as 10.77.0.0/24", s)
	}
	if p.Bits() > 24 {
		return p, fmt.Errorf("lab: subnet %s is too small: want a /24 or larger", s)
	}
	return p.Masked(), nil
}

// hostAddr returns the n-th address of the subnet (n=1 is the host on the main bridge).
func hostAddr(subnet string, n int) (netip.Addr, error) {
	p, err := parseSubnet(subnet)
	if err != nil {
		return netip.Addr{}, err
	}
	a := p.Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v += uint32(n)
	out := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	size := uint64(1) << (32 - p.Bits())
	if uint64(n) >= size-1 || !p.Contains(out) {
		return netip.Addr{}, fmt.Errorf("lab: subnet %s has no host number %d", subnet, n)
	}
	return out, nil
}

// subnetFor returns the subnet of network k (0 or 1).
func (c Config) subnetFor(k int) string {
	if k == 1 {
		return c.Subnet2
	}
	return c.Subnet
}

func prefixLen(subnet string) string {
	p, _ := parseSubnet(subnet)
	return strconv.Itoa(p.Bits())
}

// Names derived from the lab ID. See the package documentation.
func netnsName(id, node string) string { return "kb-" + id + "-" + node }
func netnsPrefix(id string) string     { return "kb-" + id + "-" }
func bridgeName(id string, k int) string {
	return "kb" + id + strconv.Itoa(k)
}
func vethName(id string, index, k int) string { return fmt.Sprintf("kb%s-%d-%d", id, index, k) }
func vethPrefix(id string) string             { return "kb" + id + "-" }
func mountSource(id, node string) string      { return "kblab-" + id + "-" + node }
func mountPrefix(id string) string            { return "kblab-" + id + "-" }
func ruleComment(id string) string            { return "kbootstrap-lab-" + id }

const envID = "KBOOTSTRAP_LAB_ID"
