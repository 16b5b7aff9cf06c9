package inventory

// Role is what a node is in the cluster.
type Role string

// The roles of a node.
const (
	RoleControlPlane Role = "control-plane"
	RoleWorker       Role = "worker"
	RoleLoadBalancer Role = "loadbalancer"
)

// Roles lists the valid roles.
var Roles = []Role{RoleControlPlane, RoleWorker, RoleLoadBalancer}

// Inventory is the whole file.
type Inventory struct {
	// File is where the inventory was loaded from ("" when built in memory).
	File string `yaml:"-" json:"-"`

	Name                 string   `yaml:"name" json:"name"`
	KubernetesVersion    string   `yaml:"kubernetesVersion" json:"kubernetesVersion"`
	ControlPlaneEndpoint string   `yaml:"controlPlaneEndpoint,omitempty" json:"controlPlaneEndpoint,omitempty"`
	PodSubnet            string   `yaml:"podSubnet,omitempty" json:"podSubnet,omitempty"`
	ServiceSubnet        string   `yaml:"serviceSubnet,omitempty" json:"serviceSubnet,omitempty"`
	DNSDomain            string   `yaml:"dnsDomain,omitempty" json:"dnsDomain,omitempty"`
	CertificateValidity  string   `yaml:"certificateValidity,omitempty" json:"certificateValidity,omitempty"`
	Network              Network  `yaml:"network,omitempty" json:"network,omitempty"`
	KubeadmConfigPatches []string `yaml:"kubeadmConfigPatches,omitempty" json:"kubeadmConfigPatches,omitempty"`
	SSH                  SSH      `yaml:"ssh,omitempty" json:"ssh,omitempty"`
	Nodes                []Node   `yaml:"nodes" json:"nodes"`
}

// Network selects the pod network.
type Network struct {
	Plugin   string `yaml:"plugin,omitempty" json:"plugin,omitempty"`     // kube-router (default) or host-gw
	Manifest string `yaml:"manifest,omitempty" json:"manifest,omitempty"` // a CNI manifest applied instead
}

// The pod networks init can set up itself.
const (
	// PluginKubeRouter is kube-router as the DaemonSet kube-system/kube-router
	// (pods labelled k8s-app=kube-router): routes between the nodes' pod
	// CIDRs (BGP between the nodes) and NetworkPolicy (iptables and ipset);
	// kube-proxy stays the service proxy. The default.
	PluginKubeRouter = "kube-router"
	// PluginHostGW is a bridge CNI configuration and routes written over
	// SSH: no NetworkPolicy, routes not kept across a reboot.
	PluginHostGW = "host-gw"
)

// PluginName is the network plugin the inventory selects ("" with a
// manifest).
func (n Network) PluginName() string {
	switch {
	case n.Manifest != "":
		return ""
	case n.Plugin == "":
		return PluginKubeRouter
	}
	return n.Plugin
}

// SSH holds connection settings; the cluster-level block is the default of
// every node, a node's own block overrides it field by field.
type SSH struct {
	User           string   `yaml:"user,omitempty" json:"user,omitempty"`
	Port           int      `yaml:"port,omitempty" json:"port,omitempty"`
	KeyFile        string   `yaml:"keyFile,omitempty" json:"keyFile,omitempty"`
	KnownHostsFile string   `yaml:"knownHostsFile,omitempty" json:"knownHostsFile,omitempty"`
	Bastion        *Bastion `yaml:"bastion,omitempty" json:"bastion,omitempty"`
}

// Bastion is a jump host.
type Bastion struct {
	Address string `yaml:"address" json:"address"`
	User    string `yaml:"user,omitempty" json:"user,omitempty"`
	Port    int    `yaml:"port,omitempty" json:"port,omitempty"`
	KeyFile string `yaml:"keyFile,omitempty" json:"keyFile,omitempty"`
}

// Node is one machine.
type Node struct {
	Name            string `yaml:"name" json:"name"`
	Address         string `yaml:"address" json:"address"`
	InternalAddress string `yaml:"internalAddress,omitempty" json:"internalAddress,omitempty"`
	Role            Role   `yaml:"role" json:"role"`
	SSH             SSH    `yaml:"ssh,omitempty" json:"ssh,omitempty"`

	// Line is where the node starts in the file (for error messages).
	Line int `yaml:"-" json:"-"`
}
