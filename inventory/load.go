package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"
)

// DefaultFile is the inventory read when -i is not given.
const DefaultFile = "kbootstrap.yaml"

// FieldError is a bad or missing value, located in the file.
type FieldError struct {
	File  string
	Line  int    // 0 when unknown
	Field string // path such as nodes[1].role
	Msg   string
}

func (e *FieldError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
	}
	return fmt.Sprintf("%s: %s: %s", loc, e.Field, e.Msg)
}

// Load reads and validates an inventory file. Every problem found is
// reported (errors.Join of *FieldError), not only the first.
func Load(path string) (*Inventory, error) {
	if path == "" {
		path = DefaultFile
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	return Parse(path, data)
}

// Parse validates an inventory held in memory; file names it in errors and
// anchors relative key and known_hosts paths.
func Parse(file string, data []byte) (*Inventory, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(doc.Content) == 0 {
		return nil, &FieldError{File: file, Field: "nodes", Msg: "the inventory is empty"}
	}
	root := doc.Content[0]
	// Unknown fields are reported together with every invalid value.
	unknown := checkKeys(file, root, reflect.TypeOf(Inventory{}), "")
	var inv Inventory
	if err := root.Decode(&inv); err != nil {
		return nil, errors.Join(append(unknown, fmt.Errorf("%s: %w", file, err))...)
	}
	inv.File = file
	for i := range inv.Nodes {
		if n := lookup(root, "nodes", strconv.Itoa(i)); n != nil {
			inv.Nodes[i].Line = n.Line
		}
	}
	v := validator{file: file, root: root, errs: unknown}
	v.validate(&inv)
	if len(v.errs) > 0 {
		return nil, errors.Join(v.errs...)
	}
	return &inv, nil
}

// checkKeys reports every mapping key that has no field in t, with its line.
func checkKeys(file string, n *yaml.Node, t reflect.Type, path string) []error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var errs []error
	switch {
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		fields := map[string]reflect.Type{}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			fields[name] = f.Type
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			p := join(path, k.Value)
			if !ok {
				known := make([]string, 0, len(fields))
				for name := range fields {
					known = append(known, name)
				}
				slices.Sort(known)
				errs = append(errs, &FieldError{File: file, Line: k.Line, Field: p, Msg: "unknown field (known: " + strings.Join(known, ", ") + ")"})
				continue
			}
			errs = append(errs, checkKeys(file, val, ft, p)...)
		}
	case n.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice:
		for i, item := range n.Content {
			errs = append(errs, checkKeys(file, item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
		}
	}
	return errs
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// lookup follows keys (mapping keys or sequence indexes) from n.
func lookup(n *yaml.Node, keys ...string) *yaml.Node {
	for _, k := range keys {
		switch n.Kind {
		case yaml.MappingNode:
			var next *yaml.Node
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == k {
					next = n.Content[i+1]
					break
				}
			}
			if next == nil {
				return nil
			}
			n = next
		case yaml.SequenceNode:
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(n.Content) {
				return nil
			}
			n = n.Content[i]
		default:
			return nil
		}
	}
	return n
}

type validator struct {
	file string
	root *yaml.Node
	errs []error
}

// fail records an error at field path (dotted, with [i] for indexes); the
// line is that of the value, or of the closest enclosing element present.
func (v *validator) fail(path string, format string, args ...any) {
	keys := strings.FieldsFunc(strings.NewReplacer("[", ".", "]", "").Replace(path), func(r rune) bool { return r == '.' })
	line := 0
	for i := len(keys); i >= 0 && line == 0; i-- {
		if n := lookup(v.root, keys[:i]...); n != nil {
			line = n.Line
		}
	}
	v.errs = append(v.errs, &FieldError{File: v.file, Line: line, Field: path, Msg: fmt.Sprintf(format, args...)})
}

var (
	dns1123   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	semver    = regexp.MustCompile(`^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`)
	hostnameR = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*$`)
)

func (v *validator) validate(inv *Inventory) {
	if inv.Name == "" {
		inv.Name = "kubernetes"
	} else if !dns1123.MatchString(inv.Name) {
		v.fail("name", "%q is not a valid cluster name (lowercase letters, digits, '-' and '.')", inv.Name)
	}
	if inv.KubernetesVersion != "" && !semver.MatchString(inv.KubernetesVersion) {
		v.fail("kubernetesVersion", "%q is not a version like v1.34.4", inv.KubernetesVersion)
	}
	if inv.ControlPlaneEndpoint != "" {
		if _, _, err := splitHostPort(inv.ControlPlaneEndpoint); err != nil {
			v.fail("controlPlaneEndpoint", "%q: %v", inv.ControlPlaneEndpoint, err)
		}
	}
	for _, f := range []struct{ name, val string }{{"podSubnet", inv.PodSubnet}, {"serviceSubnet", inv.ServiceSubnet}} {
		if f.val == "" {
			continue
		}
		for _, c := range strings.Split(f.val, ",") {
			if _, err := netip.ParsePrefix(strings.TrimSpace(c)); err != nil {
				v.fail(f.name, "%q is not a CIDR: %v", f.val, err)
			}
		}
	}
	if inv.DNSDomain != "" && !dns1123.MatchString(inv.DNSDomain) {
		v.fail("dnsDomain", "%q is not a DNS domain", inv.DNSDomain)
	}
	if inv.CertificateValidity != "" {
		if d, err := time.ParseDuration(inv.CertificateValidity); err != nil || d <= 0 {
			v.fail("certificateValidity", "%q is not a positive duration such as 8760h", inv.CertificateValidity)
		}
	}
	switch {
	case inv.Network.Plugin != "" && inv.Network.Manifest != "":
		v.fail("network", "give either plugin or manifest, not both")
	case inv.Network.Plugin != "" && inv.Network.Plugin != PluginKubeRouter && inv.Network.Plugin != PluginHostGW:
		v.fail("network.plugin", "%q is not a known plugin (%s, the default, or %s; or give manifest: FILE)", inv.Network.Plugin, PluginKubeRouter, PluginHostGW)
	case inv.Network.Manifest != "":
		inv.Network.Manifest = v.path(inv.Network.Manifest)
	}
	v.ssh("ssh", &inv.SSH, true)
	if len(inv.Nodes) == 0 {
		v.fail("nodes", "at least one node is required")
	}
	names := map[string]int{}
	addrs := map[string]int{}
	internal := map[string]int{}
	for i := range inv.Nodes {
		n := &inv.Nodes[i]
		p := fmt.Sprintf("nodes[%d]", i)
		switch {
		case n.Name == "":
			v.fail(p+".name", "missing")
		case !dns1123.MatchString(n.Name) || len(n.Name) > 63:
			v.fail(p+".name", "%q is not a valid node name (lowercase letters, digits, '-' and '.')", n.Name)
		default:
			if j, dup := names[n.Name]; dup {
				v.fail(p+".name", "%q is already the name of nodes[%d]", n.Name, j)
			}
			names[n.Name] = i
		}
		switch {
		case n.Address == "":
			v.fail(p+".address", "missing")
		case !validHost(n.Address):
			v.fail(p+".address", "%q is neither an IP address nor a host name", n.Address)
		}
		switch {
		case n.InternalAddress == "":
		case net.ParseIP(n.InternalAddress) == nil:
			v.fail(p+".internalAddress", "%q is not an IP address", n.InternalAddress)
		}
		switch {
		case n.Role == "":
			v.fail(p+".role", "missing (control-plane, worker or loadbalancer)")
		case !slices.Contains(Roles, n.Role):
			v.fail(p+".role", "%q is not one of control-plane, worker, loadbalancer", n.Role)
		}
		v.ssh(p+".ssh", &n.SSH, false)
		if n.Address != "" {
			port := inv.SSHFor(*n).Port
			key := net.JoinHostPort(n.Address, strconv.Itoa(port))
			if j, dup := addrs[key]; dup {
				v.fail(p+".address", "%s is already the SSH address of nodes[%d]", key, j)
			}
			addrs[key] = i
		}
		if ia := n.InternalIP(); ia != "" && net.ParseIP(ia) != nil {
			if j, dup := internal[ia]; dup {
				v.fail(p+".internalAddress", "%s is already the internal address of nodes[%d]", ia, j)
			}
			internal[ia] = i
		}
	}
}

// ssh validates and normalises an ssh block; defaults are filled in on the
// cluster-level block only.
func (v *validator) ssh(p string, s *SSH, cluster bool) {
	if cluster {
		if s.User == "" {
			s.User = "root"
		}
		if s.Port == 0 {
			s.Port = 22
		}
		if s.KnownHostsFile == "" {
			s.KnownHostsFile = "~/.ssh/known_hosts"
		}
	}
	if s.Port < 0 || s.Port > 65535 {
		v.fail(p+".port", "%d is not a TCP port", s.Port)
	}
	s.KeyFile = v.path(s.KeyFile)
	s.KnownHostsFile = v.path(s.KnownHostsFile)
	if b := s.Bastion; b != nil {
		if b.Address == "" {
			v.fail(p+".bastion.address", "missing")
		} else if !validHost(b.Address) {
			v.fail(p+".bastion.address", "%q is neither an IP address nor a host name", b.Address)
		}
		if b.Port < 0 || b.Port > 65535 {
			v.fail(p+".bastion.port", "%d is not a TCP port", b.Port)
		}
		b.KeyFile = v.path(b.KeyFile)
	}
}

// path expands ~ and makes a relative path relative to the inventory file.
func (v *validator) path(p string) string {
	if p == "" {
		return ""
	}
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, strings.TrimPrefix(p, "~"))
		}
		return p
	}
	if !filepath.IsAbs(p) && v.file != "" {
		return filepath.Join(filepath.Dir(v.file), p)
	}
	return p
}

func validHost(h string) bool {
	return net.ParseIP(h) != nil || (len(h) <= 253 && hostnameR.MatchString(h))
}

func splitHostPort(hp string) (string, int, error) {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	if !validHost(host) {
		return "", 0, fmt.Errorf("%q is neither an IP address nor a host name", host)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return "", 0, fmt.Errorf("%q is not a TCP port", port)
	}
	return host, p, nil
}
