package inventory

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestFromVagrantGolden(t *testing.T) {
	machinesFile := filepath.Join("testdata", "vagrant-machines.json")
	data, err := os.ReadFile(machinesFile)
	if err != nil {
		t.Fatal(err)
	}
	machines, err := ParseVagrantMachines(machinesFile, data)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		config   string
		machines []VagrantMachine
		golden   string
	}{
		{"vagrant-virtualbox.ssh-config", machines, "vagrant-virtualbox.golden.yaml"},
		{"vagrant-libvirt.ssh-config", nil, "vagrant-libvirt.golden.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.config, func(t *testing.T) {
			in := filepath.Join("testdata", tt.config)
			cfg, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			got, err := FromVagrant(in, cfg, VagrantOptions{Name: "vagrant", KubernetesVersion: "v1.34.4", Machines: tt.machines, KnownHostsFile: ".vagrant/kbootstrap_known_hosts"})
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", tt.golden)
			if *update {
				os.WriteFile(golden, got, 0o644)
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("FromVagrant(%s) =\n%s\nwant\n%s", tt.config, got, want)
			}
			// The generated file loads as an inventory.
			if _, err := Parse(golden, got); err != nil {
				t.Errorf("generated inventory does not load: %v", err)
			}
		})
	}
}

func TestFromVagrantErrors(t *testing.T) {
	tests := []struct{ name, config, want string }{
		{"not ssh-config", "hello world\n", "before any Host line"},
		{"empty", "\n", "no Host entries"},
		{"no hostname", "Host cp1\n  User vagrant\n", "f:1: Host cp1: HostName and User are required"},
		{"bad port", "Host cp1\n  HostName 1.2.3.4\n  User vagrant\n  Port x\n", "bad Port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := FromVagrant("f", []byte(tt.config), VagrantOptions{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
	_, err := FromVagrant("f", []byte("Host x9\n  HostName 1.2.3.4\n  User v\n"), VagrantOptions{Machines: []VagrantMachine{{Name: "cp1", Role: RoleControlPlane, IP: "1.1.1.1"}}})
	if err == nil || !strings.Contains(err.Error(), "not in the Vagrantfile's machine list") {
		t.Errorf("unknown machine: %v", err)
	}
}
