package etcd

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/kbootstrap/kbootstrap/kubeadm"
	"github.com/kbootstrap/kbootstrap/node"
)

// Source says where flags were read.
type Source string

// The sources of the API server's flags.
const (
	SourceProcess  Source = "process"
	SourceManifest Source = "manifest"
)

// DefaultPrefix is kube-apiserver's default --etcd-prefix.
const DefaultPrefix = "/registry"

// ClientFlags are the kube-apiserver's etcd client flags.
type ClientFlags struct {
	Endpoints []string `json:"endpoints"` // --etcd-servers
	CACert    string   `json:"cacert"`    // --etcd-cafile
	Cert      string   `json:"cert"`      // --etcd-certfile
	Key       string   `json:"key"`       // --etcd-keyfile
	Prefix    string   `json:"prefix"`    // --etcd-prefix (default /registry)
}

// NodeFlags are one control plane's etcd client flags and where they come
// from.
type NodeFlags struct {
	Node   string `json:"node"`
	Source Source `json:"source"`
	ClientFlags
	// PID of the kube-apiserver when Source is process.
	PID int `json:"pid,omitempty"`
	// Differences between the running process and the manifest on disk (a
	// manifest edited but not yet applied by the kubelet, or the reverse).
	Differences []string `json:"differences,omitempty"`

	// Process and Manifest are the full parsed command lines (nil when absent).
	Process  *Args `json:"-"`
	Manifest *Args `json:"-"`
}

// apiServerBoolFlags never take the next argument as their value.
var apiServerBoolFlags = map[string]bool{
	"allow-privileged": true, "anonymous-auth": true, "enable-bootstrap-token-auth": true,
	"profiling": true, "enable-aggregator-routing": true, "enable-priority-and-fairness": true,
	"enable-garbage-collector": true, "enable-logs-handler": true,
}

// ClientFlagsFromArgs extracts the etcd client flags from a kube-apiserver
// command line.
func ClientFlagsFromArgs(a Args) ClientFlags {
	f := ClientFlags{
		Endpoints: a.List("etcd-servers"),
		CACert:    a.String("etcd-cafile"),
		Cert:      a.String("etcd-certfile"),
		Key:       a.String("etcd-keyfile"),
		Prefix:    a.String("etcd-prefix"),
	}
	if f.Prefix == "" {
		f.Prefix = DefaultPrefix
	}
	return f
}

// ParseAPIServerArgs parses a kube-apiserver command line.
func ParseAPIServerArgs(argv []string) Args { return ParseArgs(argv, apiServerBoolFlags) }

// Validate reports what the flags lack to reach etcd with TLS client auth.
func (f ClientFlags) Validate() error {
	var missing []string
	if len(f.Endpoints) == 0 {
		missing = append(missing, "--etcd-servers")
	}
	if f.CACert == "" {
		missing = append(missing, "--etcd-cafile")
	}
	if f.Cert == "" {
		missing = append(missing, "--etcd-certfile")
	}
	if f.Key == "" {
		missing = append(missing, "--etcd-keyfile")
	}
	if len(missing) > 0 {
		return fmt.Errorf("kube-apiserver has no %s", strings.Join(missing, ", "))
	}
	for _, ep := range f.Endpoints {
		if _, err := ParseEndpoint(ep); err != nil {
			return err
		}
	}
	return nil
}

// Endpoint is one etcd client URL split for dialling.
type Endpoint struct {
	URL        string // as given
	Scheme     string // http, https (unix endpoints are refused)
	HostPort   string // host:port, IPv6 in brackets
	ServerName string // host without brackets, for TLS verification
}

// ParseEndpoint parses an --etcd-servers item: https://10.0.0.1:2379,
// https://[::1]:2379, or a bare host:port (taken as https).
func ParseEndpoint(ep string) (Endpoint, error) {
	raw := ep
	if !strings.Contains(ep, "://") {
		ep = "https://" + ep
	}
	u, err := url.Parse(ep)
	if err != nil {
		return Endpoint{}, fmt.Errorf("etcd endpoint %q: %w", raw, err)
	}
	switch u.Scheme {
	case "http", "https":
	default:
		return Endpoint{}, fmt.Errorf("etcd endpoint %q: scheme %q is not supported through the node (want https)", raw, u.Scheme)
	}
	if u.Hostname() == "" {
		return Endpoint{}, fmt.Errorf("etcd endpoint %q: no host", raw)
	}
	hp := u.Host
	if u.Port() == "" {
		hp = joinHostPort(u.Hostname(), "2379")
	}
	return Endpoint{URL: raw, Scheme: u.Scheme, HostPort: hp, ServerName: u.Hostname()}, nil
}

func joinHostPort(host, port string) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + port
	}
	return host + ":" + port
}

// DiscoverFlags reads the kube-apiserver's etcd client flags on n: from the
// running process first, from the static pod manifest when none runs. When
// both exist their differences are listed. n is wrapped with node.Sudo.
func DiscoverFlags(ctx context.Context, n node.Node) (NodeFlags, error) {
	n = node.Sudo(n)
	out := NodeFlags{Node: n.Name()}
	proc, err := FindProcess(ctx, n, apiServerProcess, false)
	if err != nil {
		return out, err
	}
	margv, _, err := readManifest(ctx, n, kubeadm.APIServerManifest, apiServerContainer)
	if err != nil {
		return out, err
	}
	if proc != nil {
		a := ParseAPIServerArgs(proc.Argv)
		out.Process = &a
		out.PID = proc.PID
	}
	if margv != nil {
		a := ParseAPIServerArgs(margv)
		out.Manifest = &a
	}
	switch {
	case out.Process != nil:
		out.Source = SourceProcess
		out.ClientFlags = ClientFlagsFromArgs(*out.Process)
		if out.Manifest != nil {
			out.Differences = Differences(*out.Process, *out.Manifest)
		} else {
			out.Differences = []string{"kube-apiserver runs but " + kubeadm.APIServerManifest + " does not exist"}
		}
	case out.Manifest != nil:
		out.Source = SourceManifest
		out.ClientFlags = ClientFlagsFromArgs(*out.Manifest)
	default:
		return out, fmt.Errorf("node %s: no kube-apiserver process runs and %s does not exist", n.Name(), kubeadm.APIServerManifest)
	}
	if err := out.ClientFlags.Validate(); err != nil {
		return out, fmt.Errorf("node %s: %s flags: %w", n.Name(), out.Source, err)
	}
	return out, nil
}

// etcdClientFlagNames are the flags compared between process and manifest.
var etcdClientFlagNames = []string{"etcd-servers", "etcd-cafile", "etcd-certfile", "etcd-keyfile", "etcd-prefix"}

// Differences lists the etcd client flags whose values differ between the
// running process and the manifest.
func Differences(process, manifest Args) []string {
	var out []string
	for _, name := range etcdClientFlagNames {
		p, pok := process.Get(name)
		m, mok := manifest.Get(name)
		if name == "etcd-servers" {
			if slices.Equal(splitList(p), splitList(m)) && pok == mok {
				continue
			}
		} else if p == m && pok == mok {
			continue
		}
		out = append(out, fmt.Sprintf("--%s: process %s, manifest %s (manifest edited but not applied, or process started by hand)", name, showValue(p, pok), showValue(m, mok)))
	}
	return out
}

// ArgDifferences lists every flag whose value differs between two command
// lines (used by the audit for etcd itself).
func ArgDifferences(process, manifest Args) []string {
	names := slices.Clone(process.Order)
	for _, n := range manifest.Order {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	var out []string
	for _, name := range names {
		p, pok := process.Get(name)
		m, mok := manifest.Get(name)
		if p == m && pok == mok {
			continue
		}
		out = append(out, fmt.Sprintf("--%s: process %s, manifest %s", name, showValue(p, pok), showValue(m, mok)))
	}
	return out
}

func showValue(v string, ok bool) string {
	if !ok {
		return "(unset)"
	}
	return fmt.Sprintf("%q", v)
}

// EtcdctlCommand is the etcdctl command line equivalent to the flags, to be
// run on the node (args is e.g. "member list").
func (f ClientFlags) EtcdctlCommand(args ...string) string {
	cmd := []string{"etcdctl", "--endpoints=" + strings.Join(f.Endpoints, ","), "--cacert=" + f.CACert, "--cert=" + f.Cert, "--key=" + f.Key}
	return node.JoinArgs(append(cmd, args...)...)
}
