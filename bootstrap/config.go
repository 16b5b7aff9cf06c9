package bootstrap

import (
	"bytes"
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"
)

// The kubeadm configuration API kbootstrap generates.
const (
	KubeadmAPIVersion   = "kubeadm.k8s.io/v1beta4"
	kubeletAPIVersion   = "kubelet.config.k8s.io/v1beta1"
	kubeProxyAPIVersion = "kubeproxy.config.k8s.io/v1alpha1"
	// CRISocket is containerd's socket, as prepare-node installs it.
	CRISocket = "unix:///run/containerd/containerd.sock"
)

// ClusterParams are the cluster-wide inputs of a kubeadm configuration.
type ClusterParams struct {
	Name                 string
	KubernetesVersion    string
	ControlPlaneEndpoint string // host:port
	PodSubnet            string
	ServiceSubnet        string
	DNSDomain            string
	CertificateValidity  string // kubeadm's certificateValidityPeriod ("" = kubeadm's default)
	CgroupDriver         string // cgroupfs or systemd (from containerd's configuration)
	FailSwapOn           bool
	Patches              []string // raw kubeadm config fragments merged by apiVersion/kind
}

// NodeParams describe the node a configuration is for.
type NodeParams struct {
	Name    string
	Address string // internal address: advertise address and kubelet node-ip
}

// InitParams are the secrets of `kubeadm init`.
type InitParams struct {
	Token          string // bootstrap token created by init
	TokenTTL       string // e.g. 2h0m0s
	CertificateKey string
}

// JoinParams are the inputs of `kubeadm join`.
type JoinParams struct {
	Endpoint       string // apiServerEndpoint
	Token          string
	CACertHash     string // sha256:...
	ControlPlane   bool
	CertificateKey string // control planes only
}

type doc = map[string]any

func nodeRegistration(n NodeParams) doc {
	return doc{
		"name":            n.Name,
		"criSocket":       CRISocket,
		"imagePullPolicy": "IfNotPresent",
		"kubeletExtraArgs": []any{
			doc{"name": "node-ip", "value": n.Address},
		},
	}
}

// InitConfig is the kubeadm configuration of `kubeadm init` on the first
// control plane: InitConfiguration, ClusterConfiguration,
// KubeletConfiguration and KubeProxyConfiguration, with the patches merged.
func InitConfig(c ClusterParams, n NodeParams, p InitParams) ([]byte, error) {
	init := doc{
		"apiVersion": KubeadmAPIVersion,
		"kind":       "InitConfiguration",
		"localAPIEndpoint": doc{
			"advertiseAddress": n.Address,
			"bindPort":         6443,
		},
		"nodeRegistration": nodeRegistration(n),
	}
	if p.CertificateKey != "" {
		init["certificateKey"] = p.CertificateKey
	}
	if p.Token != "" {
		ttl := p.TokenTTL
		if ttl == "" {
			ttl = "2h0m0s"
		}
		init["bootstrapTokens"] = []any{doc{
			"token":       p.Token,
			"ttl":         ttl,
			"description": "kbootstrap init",
			"usages":      []any{"signing", "authentication"},
			"groups":      []any{"system:bootstrappers:kubeadm:default-node-token"},
		}}
	}
	networking := doc{}
	setIf(networking, "podSubnet", c.PodSubnet)
	setIf(networking, "serviceSubnet", c.ServiceSubnet)
	setIf(networking, "dnsDomain", c.DNSDomain)
	cluster := doc{
		"apiVersion":           KubeadmAPIVersion,
		"kind":                 "ClusterConfiguration",
		"clusterName":          c.Name,
		"kubernetesVersion":    c.KubernetesVersion,
		"controlPlaneEndpoint": c.ControlPlaneEndpoint,
		"networking":           networking,
	}
	setIf(cluster, "certificateValidityPeriod", c.CertificateValidity)
	driver := c.CgroupDriver
	if driver == "" {
		driver = "systemd"
	}
	kubelet := doc{
		"apiVersion":   kubeletAPIVersion,
		"kind":         "KubeletConfiguration",
		"cgroupDriver": driver,
		"failSwapOn":   c.FailSwapOn,
	}
	proxy := doc{
		"apiVersion": kubeProxyAPIVersion,
		"kind":       "KubeProxyConfiguration",
		// 0 leaves nf_conntrack_max as it is (it is not namespaced, and a
		// node may not be allowed to change it).
		"conntrack": doc{"maxPerCore": 0},
	}
	return render([]doc{init, cluster, kubelet, proxy}, c.Patches)
}

// JoinConfig is the JoinConfiguration of `kubeadm join` for n.
func JoinConfig(c ClusterParams, n NodeParams, p JoinParams) ([]byte, error) {
	join := doc{
		"apiVersion": KubeadmAPIVersion,
		"kind":       "JoinConfiguration",
		"discovery": doc{
			"bootstrapToken": doc{
				"apiServerEndpoint": p.Endpoint,
				"token":             p.Token,
				"caCertHashes":      []any{p.CACertHash},
			},
		},
		"nodeRegistration": nodeRegistration(n),
	}
	if p.ControlPlane {
		join["controlPlane"] = doc{
			"localAPIEndpoint": doc{"advertiseAddress": n.Address, "bindPort": 6443},
			"certificateKey":   p.CertificateKey,
		}
	}
	return render([]doc{join}, c.Patches)
}

func setIf(d doc, key, value string) {
	if value != "" {
		d[key] = value
	}
}

// render merges the patches into the documents of the same apiVersion and
// kind (a patch for a kind not generated is ignored for this file) and
// writes them as one multi-document YAML.
func render(docs []doc, patches []string) ([]byte, error) {
	for i, raw := range patches {
		for j, part := range splitYAML(raw) {
			var p doc
			if err := yaml.Unmarshal([]byte(part), &p); err != nil {
				return nil, fmt.Errorf("kubeadmConfigPatches[%d] document %d: %w", i, j, err)
			}
			if p == nil {
				continue
			}
			kind, _ := p["kind"].(string)
			if kind == "" {
				return nil, fmt.Errorf("kubeadmConfigPatches[%d] document %d: no kind", i, j)
			}
			for _, d := range docs {
				if d["kind"] != kind {
					continue
				}
				if av, ok := p["apiVersion"].(string); ok && av != d["apiVersion"] {
					return nil, fmt.Errorf("kubeadmConfigPatches[%d]: %s %s: kbootstrap generates %s", i, av, kind, d["apiVersion"])
				}
				merge(d, p)
			}
		}
	}
	var b bytes.Buffer
	for i, d := range docs {
		if i > 0 {
			b.WriteString("---\n")
		}
		out, err := yaml.Marshal(d)
		if err != nil {
			return nil, err
		}
		b.Write(out)
	}
	return b.Bytes(), nil
}

// merge sets src's values into dst, maps recursively; lists and scalars
// replace.
func merge(dst, src doc) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				merge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

func splitYAML(s string) []string {
	var out []string
	for _, part := range strings.Split("\n"+s, "\n---") {
		if strings.TrimSpace(part) != "" {
			out = append(out, part)
		}
	}
	return out
}
