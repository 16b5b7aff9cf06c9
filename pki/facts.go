package pki

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// version is a Kubernetes major.minor; zero when unknown.
type version struct{ Major, Minor int }

var versionRE = regexp.MustCompile(`^v?(\d+)\.(\d+)(\.\d+)?`)

func parseVersion(s string) version {
	m := versionRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return version{}
	}
	maj, _ := strconv.Atoi(m[1])
	mnr, _ := strconv.Atoi(m[2])
	return version{maj, mnr}
}

func (v version) known() bool { return v.Major > 0 }

func (v version) less(maj, mnr int) bool {
	return v.Major < maj || v.Major == maj && v.Minor < mnr
}

func (v version) String() string {
	if !v.known() {
		return "unknown"
	}
	return fmt.Sprintf("v%d.%d", v.Major, v.Minor)
}

// etcdMode is whether the control plane runs kubeadm's local etcd.
type etcdMode int

const (
	etcdUnknown etcdMode = iota
	etcdStacked
	etcdExternal
)

// facts are what the audit expects of one control plane: from the inventory
// in remote mode, from the node's static pod manifests in both modes. An
// empty field is unknown, and the checks that need it say so.
type facts struct {
	NodeName      string
	Address       string // advertise address (the node's internal IP)
	ServiceSubnet string // first CIDR of the service range
	DNSDomain     string
	// Endpoint is the controlPlaneEndpoint host (without port).
	Endpoint string
	Version  version
	Etcd     etcdMode

	// From tells where each fact came from, for messages.
	From map[string]string
}

func (f *facts) set(field *string, name, value, from string) {
	if value == "" || *field != "" {
		return
	}
	*field = value
	if f.From == nil {
		f.From = map[string]string{}
	}
	f.From[name] = from
}

// manifest is the part of a static pod manifest the audit reads.
type manifest struct {
	Metadata struct {
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		Containers []struct {
			Name    string   `json:"name"`
			Image   string   `json:"image"`
			Command []string `json:"command"`
			Args    []string `json:"args"`
		} `json:"containers"`
	} `json:"spec"`
}

// podFlags is a parsed static pod manifest: its image and --flags of its
// first container.
type podFlags struct {
	Image string
	Flags map[string]string
}

func parseManifest(data []byte) (*podFlags, error) {
	var m manifest
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	if len(m.Spec.Containers) == 0 {
		return nil, fmt.Errorf("no container in the pod spec")
	}
	c := m.Spec.Containers[0]
	p := &podFlags{Image: c.Image, Flags: map[string]string{}}
	for _, a := range append(append([]string{}, c.Command...), c.Args...) {
		if !strings.HasPrefix(a, "--") {
			continue
		}
		k, v, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		p.Flags[k] = v
	}
	return p, nil
}

// imageVersion returns the tag of an image reference.
func imageVersion(image string) version {
	if i := strings.LastIndex(image, ":"); i >= 0 && !strings.Contains(image[i:], "/") {
		return parseVersion(image[i+1:])
	}
	return version{}
}

// firstServiceIP is the first usable IP of the first CIDR in a service
// range ("10.96.0.0/12" → 10.96.0.1), as kubeadm's GetAPIServerVirtualIP.
func firstServiceIP(subnets string) (net.IP, error) {
	first, _, _ := strings.Cut(subnets, ",")
	_, n, err := net.ParseCIDR(strings.TrimSpace(first))
	if err != nil {
		return nil, err
	}
	ip := make(net.IP, len(n.IP))
	copy(ip, n.IP)
	for i := len(ip) - 1; i >= 0; i-- {
		ip[i]++
		if ip[i] != 0 {
			break
		}
	}
	if !n.Contains(ip) {
		return nil, fmt.Errorf("service range %s holds no address", first)
	}
	return ip, nil
}

// serverHost returns the host of a kubeconfig server URL.
func serverHost(server string) string {
	u, err := url.Parse(server)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// endpointHost returns the host of host[:port].
func endpointHost(ep string) string {
	if h, _, err := net.SplitHostPort(ep); err == nil {
		return h
	}
	return strings.Trim(ep, "[]")
}
