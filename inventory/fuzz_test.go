package inventory

import "testing"

// FuzzParse: an inventory file parses or is refused, never panics.
func FuzzParse(f *testing.F) {
	f.Add([]byte("name: lab\nkubernetesVersion: v1.34.4\nnodes:\n  - {name: cp1, address: 10.0.0.11, role: control-plane}\n"))
	f.Add([]byte("nodes: [{name: a, address: '::1', role: worker, ssh: {port: 99999}}]\n"))
	f.Add([]byte("name: [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		inv, err := Parse("fuzz.yaml", data)
		if err == nil {
			_ = inv.Endpoint()
		}
	})
}

// FuzzVagrant: vagrant ssh-config output and the machine list parse.
func FuzzVagrant(f *testing.F) {
	f.Add([]byte("Host cp1\n  HostName 127.0.0.1\n  User vagrant\n  Port 2222\n  IdentityFile /x/key\n"), []byte(`[{"name":"cp1","role":"control-plane","ip":"192.168.56.11"}]`))
	f.Fuzz(func(t *testing.T, sshConfig, machines []byte) {
		_, _ = parseSSHConfig("ssh-config", sshConfig)
		_, _ = ParseVagrantMachines("machines.json", machines)
	})
}
