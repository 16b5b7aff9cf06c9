// Package inventorycmd is `kbootstrap inventory`: building inventories.
package inventorycmd

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"

	"github.com/spf13/cobra"

	"github.com/kbootstrap/kbootstrap/cmd/kbootstrap/internal/cli"
	"github.com/kbootstrap/kbootstrap/inventory"
)

type fromVagrantFlags struct {
	sshConfig         string
	machines          string
	name              string
	kubernetesVersion string
	knownHosts        string
}

// NewCommand returns `inventory` with from-vagrant.
func NewCommand(g *cli.Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "inventory", Short: "Build inventories"}
	var f fromVagrantFlags
	fv := &cobra.Command{
		Use:   "from-vagrant",
		Short: "Print an inventory built from `vagrant ssh-config`",
		Long: `Print an inventory built from "vagrant ssh-config" (run in the current
directory, or a saved copy given with --ssh-config): SSH address, port, user and
key per machine; role and private-network address (internalAddress) from the
machine list that kbootstrap's Vagrantfile writes to
.vagrant/kbootstrap-machines.json (without it, roles come from the names: cp*,
lb*, else worker). Typical use:

  vagrant up
  kbootstrap inventory from-vagrant > kbootstrap.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			src, config, err := sshConfig(f.sshConfig)
			if err != nil {
				return err
			}
			opts := inventory.VagrantOptions{Name: f.name, KubernetesVersion: f.kubernetesVersion, KnownHostsFile: f.knownHosts}
			if data, err := os.ReadFile(f.machines); err == nil {
				if opts.Machines, err = inventory.ParseVagrantMachines(f.machines, data); err != nil {
					return err
				}
			} else if cmd.Flags().Changed("machines") || !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("--machines: %w", err)
			}
			out, err := inventory.FromVagrant(src, config, opts)
			if err != nil {
				return err
			}
			_, err = g.Streams.Out.Write(out)
			return err
		},
	}
	fv.Flags().StringVar(&f.sshConfig, "ssh-config", "", "saved output of `vagrant ssh-config` (default: run it)")
	fv.Flags().StringVar(&f.machines, "machines", ".vagrant/kbootstrap-machines.json", "machine list written by kbootstrap's Vagrantfile")
	fv.Flags().StringVar(&f.name, "name", "vagrant", "cluster name")
	fv.Flags().StringVar(&f.kubernetesVersion, "kubernetes-version", "v1.34.4", "kubernetesVersion of the inventory")
	fv.Flags().StringVar(&f.knownHosts, "known-hosts", ".vagrant/kbootstrap_known_hosts", "knownHostsFile of the inventory (relative to the inventory file)")
	cmd.AddCommand(fv)
	return cmd
}

// sshConfig reads the saved file, or runs `vagrant ssh-config`.
func sshConfig(file string) (string, []byte, error) {
	if file != "" {
		data, err := os.ReadFile(file)
		return file, data, err
	}
	c := exec.Command("vagrant", "ssh-config")
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		return "", nil, fmt.Errorf("vagrant ssh-config: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	return "vagrant ssh-config", out, nil
}
