package inventory

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// VagrantMachine is one machine as kbootstrap's Vagrantfile describes it in
// .vagrant/kbootstrap-machines.json.
type VagrantMachine struct {
	Name string `json:"name"`
	Role Role   `json:"role"`
	IP   string `json:"ip"` // private network address
}

// VagrantOptions shape the inventory built from Vagrant.
type VagrantOptions struct {
	Name              string
	KubernetesVersion string
	// Machines, when known (from the Vagrantfile's machines file), give each
	// machine's role and private address; otherwise roles come from names
	// (cp*, lb*, anything else a worker) and the private address is unknown.
	Machines []VagrantMachine
	// KnownHostsFile for the inventory's ssh block.
	KnownHostsFile string
}

// ParseVagrantMachines reads the machines file written by the Vagrantfile.
func ParseVagrantMachines(file string, data []byte) ([]VagrantMachine, error) {
	var ms []VagrantMachine
	if err := json.Unmarshal(data, &ms); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	for i, m := range ms {
		if m.Name == "" || !slices.Contains(Roles, m.Role) || net.ParseIP(m.IP) == nil {
			return nil, fmt.Errorf("%s: machine %d: need name, role (control-plane|worker|loadbalancer) and ip, got %+v", file, i, m)
		}
	}
	return ms, nil
}

// sshHost is one Host block of `vagrant ssh-config`.
type sshHost struct {
	name                      string
	line                      int
	hostName, user, port, key string
}

// parseSSHConfig reads the Host blocks of an ssh_config as Vagrant prints it.
func parseSSHConfig(file string, data []byte) ([]sshHost, error) {
	var hosts []sshHost
	sc := bufio.NewScanner(bytes.NewReader(data))
	ln := 0
	for sc.Scan() {
		ln++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, val, _ := strings.Cut(line, " ")
		val = strings.Trim(strings.TrimSpace(val), `"`)
		if strings.EqualFold(key, "Host") {
			hosts = append(hosts, sshHost{name: val, line: ln})
			continue
		}
		if len(hosts) == 0 {
			return nil, fmt.Errorf("%s:%d: %q before any Host line", file, ln, key)
		}
		h := &hosts[len(hosts)-1]
		switch strings.ToLower(key) {
		case "hostname":
			h.hostName = val
		case "user":
			h.user = val
		case "port":
			h.port = val
		case "identityfile":
			if h.key == "" { // ssh uses the first one first
				h.key = val
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(hosts) == 0 {
		return nil, fmt.Errorf("%s: no Host entries: is this the output of `vagrant ssh-config`?", file)
	}
	return hosts, nil
}

var (
	cpName = regexp.MustCompile(`^(cp|control|master|controlplane|k8s-cp)[-_]?\d*$`)
	lbName = regexp.MustCompile(`^(lb|loadbalancer|haproxy)[-_]?\d*$`)
)

// roleFromName guesses a machine's role from its name.
func roleFromName(name string) Role {
	switch {
	case cpName.MatchString(name):
		return RoleControlPlane
	case lbName.MatchString(name):
		return RoleLoadBalancer
	}
	return RoleWorker
}

// FromVagrant builds an inventory file from `vagrant ssh-config` output: SSH
// address, port, user and key per machine, internalAddress from the private
// network, roles from the Vagrantfile's machine list (or the names). The
// result passes the same validation as a hand-written inventory.
func FromVagrant(file string, sshConfig []byte, opts VagrantOptions) ([]byte, error) {
	hosts, err := parseSSHConfig(file, sshConfig)
	if err != nil {
		return nil, err
	}
	inv := &Inventory{
		Name:              opts.Name,
		KubernetesVersion: opts.KubernetesVersion,
		SSH:               SSH{KnownHostsFile: opts.KnownHostsFile},
	}
	if inv.Name == "" {
		inv.Name = "vagrant"
	}
	byName := map[string]VagrantMachine{}
	for _, m := range opts.Machines {
		byName[m.Name] = m
	}
	for _, h := range hosts {
		if h.hostName == "" || h.user == "" {
			return nil, fmt.Errorf("%s:%d: Host %s: HostName and User are required", file, h.line, h.name)
		}
		port := 22
		if h.port != "" {
			if port, err = strconv.Atoi(h.port); err != nil || port < 1 || port > 65535 {
				return nil, fmt.Errorf("%s:%d: Host %s: bad Port %q", file, h.line, h.name, h.port)
			}
		}
		n := Node{
			Name:    h.name,
			Address: h.hostName,
			Role:    roleFromName(h.name),
			SSH:     SSH{User: h.user, Port: port, KeyFile: h.key},
		}
		if m, ok := byName[h.name]; ok {
			n.Role = m.Role
			n.InternalAddress = m.IP
		} else if len(opts.Machines) > 0 {
			return nil, fmt.Errorf("%s:%d: Host %s is not in the Vagrantfile's machine list", file, h.line, h.name)
		}
		inv.Nodes = append(inv.Nodes, n)
	}
	for _, n := range inv.Nodes {
		if n.Role == RoleLoadBalancer && n.InternalAddress != "" && inv.ControlPlaneEndpoint == "" {
			inv.ControlPlaneEndpoint = net.JoinHostPort(n.InternalAddress, "6443")
		}
	}
	// Hoist what every node shares into the cluster-level ssh block.
	hoistSSH(inv)
	out, err := inv.Marshal()
	if err != nil {
		return nil, err
	}
	if _, err := Parse("inventory generated from "+file, out); err != nil {
		return nil, err
	}
	header := "# Generated by `kbootstrap inventory from-vagrant` from `vagrant ssh-config`.\n"
	return append([]byte(header), out...), nil
}

func hoistSSH(inv *Inventory) {
	same := func(get func(SSH) string) (string, bool) {
		v := get(inv.Nodes[0].SSH)
		for _, n := range inv.Nodes[1:] {
			if get(n.SSH) != v {
				return "", false
			}
		}
		return v, true
	}
	if u, ok := same(func(s SSH) string { return s.User }); ok {
		inv.SSH.User = u
		for i := range inv.Nodes {
			inv.Nodes[i].SSH.User = ""
		}
	}
	if p, ok := same(func(s SSH) string { return strconv.Itoa(s.Port) }); ok {
		inv.SSH.Port, _ = strconv.Atoi(p)
		for i := range inv.Nodes {
			inv.Nodes[i].SSH.Port = 0
		}
	}
}

// Marshal renders the inventory as YAML in the file format.
func (inv *Inventory) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(inv); err != nil {
		return nil, err
	}
	return buf.Bytes(), enc.Close()
}
