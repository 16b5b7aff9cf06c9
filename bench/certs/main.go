// Command certs benchmarks `kbootstrap certs check` against what an operator
// would otherwise run: `kubeadm certs check-expiration` over ssh on every
// control plane of the same inventory.
//
//	go run ./bench/certs -i .lab/test-certs/kbootstrap.yaml [-n 5] \
//	    [-kubeadm /opt/kbootstrap/bin/kubeadm] [-kubeadm-args "--config /root/kbootstrap-certs/cfg.yaml"]
//
// One kbootstrap invocation audits every control plane (all checks, not only
// expiry); the ssh baseline starts one OpenSSH client per node, in parallel
// and one after the other. It prints the median of each and the ratios. Run it
// from the repository root; the nodes must already hold a kubeadm PKI (the
// certs e2e test leaves one in its lab with KBOOTSTRAP_KEEP_LAB=1).
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kbootstrap/kbootstrap/inventory"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/certs:", err)
		os.Exit(1)
	}
}

type options struct {
	inventory   string
	n           int
	kbootstrap  string
	kubeadm     string
	kubeadmArgs string
}

func run() error {
	var o options
	flag.StringVar(&o.inventory, "i", ".lab/kbootstrap.yaml", "inventory of the control planes")
	flag.IntVar(&o.n, "n", 5, "measured runs of each")
	flag.StringVar(&o.kbootstrap, "kbootstrap", "", "kbootstrap binary (default: built from ./cmd/kbootstrap)")
	flag.StringVar(&o.kubeadm, "kubeadm", "/opt/kbootstrap/bin/kubeadm", "kubeadm on the nodes")
	flag.StringVar(&o.kubeadmArgs, "kubeadm-args", "--config /root/kbootstrap-certs/cfg.yaml", "arguments after kubeadm certs check-expiration (a config file avoids asking a cluster that may not run)")
	flag.Parse()

	inv, err := inventory.Load(o.inventory)
	if err != nil {
		return err
	}
	cps := inv.ByRole(inventory.RoleControlPlane)
	if len(cps) == 0 {
		return fmt.Errorf("%s: no control plane", o.inventory)
	}
	if o.kbootstrap == "" {
		dir, err := os.MkdirTemp("", "bench-certs-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.kbootstrap = filepath.Join(dir, "kbootstrap")
		if out, err := exec.Command("go", "build", "-o", o.kbootstrap, "./cmd/kbootstrap").CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/kbootstrap: %v\n%s", err, out)
		}
	}

	kb := func() error { return kbootstrapCheck(o) }
	parallel := func() error { return sshAll(inv, cps, o, true) }
	serial := func() error { return sshAll(inv, cps, o, false) }
	// Warm up (page cache, sshd) and make sure every variant works.
	for name, f := range map[string]func() error{"kbootstrap": kb, "ssh": parallel} {
		if err := f(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	tk, err := measure(o.n, kb)
	if err != nil {
		return err
	}
	tp, err := measure(o.n, parallel)
	if err != nil {
		return err
	}
	ts, err := measure(o.n, serial)
	if err != nil {
		return err
	}
	fmt.Printf("control planes: %d (%s), runs: %d, medians:\n", len(cps), names(cps), o.n)
	fmt.Printf("  kbootstrap certs check (all checks, one invocation):      %8.1f ms\n", ms(tk))
	fmt.Printf("  ssh NODE kubeadm certs check-expiration, nodes in parallel: %8.1f ms\n", ms(tp))
	fmt.Printf("  ssh NODE kubeadm certs check-expiration, one after another: %8.1f ms\n", ms(ts))
	fmt.Printf("ratio kbootstrap / ssh parallel: %.2f\n", float64(tk)/float64(tp))
	fmt.Printf("ratio kbootstrap / ssh serial:   %.2f\n", float64(tk)/float64(ts))
	return nil
}

func names(ns []inventory.Node) string {
	var s []string
	for _, n := range ns {
		s = append(s, n.Name)
	}
	return strings.Join(s, ", ")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// measure returns the median duration of n runs of f.
func measure(n int, f func() error) (time.Duration, error) {
	var ds []time.Duration
	for i := 0; i < n; i++ {
		start := time.Now()
		if err := f(); err != nil {
			return 0, err
		}
		ds = append(ds, time.Since(start))
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2], nil
}

// kbootstrapCheck runs one audit; findings with failures are fine (exit 2),
// an unreadable node is not.
func kbootstrapCheck(o options) error {
	cmd := exec.Command(o.kbootstrap, "-i", o.inventory, "certs", "check", "-o", "json")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return err
	}
	var doc struct {
		Findings []struct{ Node, Check, Message string }
	}
	if jerr := json.Unmarshal(out.Bytes(), &doc); jerr != nil || len(doc.Findings) == 0 {
		return fmt.Errorf("kbootstrap certs check: %v: %s", err, errb.String())
	}
	for _, f := range doc.Findings {
		if f.Check == "node.read" {
			return fmt.Errorf("kbootstrap certs check: %s: %s", f.Node, f.Message)
		}
	}
	return nil
}

// sshAll runs kubeadm certs check-expiration on every control plane with
// OpenSSH, as a shell loop would.
func sshAll(inv *inventory.Inventory, cps []inventory.Node, o options, parallel bool) error {
	errs := make([]error, len(cps))
	var wg sync.WaitGroup
	for i, n := range cps {
		f := func() {
			defer wg.Done()
			args := sshArgs(inv, n)
			remote := o.kubeadm + " certs check-expiration " + o.kubeadmArgs
			if inv.SSHFor(n).User != "root" {
				remote = "sudo -n " + remote
			}
			out, err := exec.Command("ssh", append(args, remote)...).CombinedOutput()
			if err != nil {
				errs[i] = fmt.Errorf("ssh %s: %v\n%s", n.Name, err, out)
			} else if !bytes.Contains(out, []byte("RESIDUAL TIME")) {
				errs[i] = fmt.Errorf("ssh %s: no expiration table:\n%s", n.Name, out)
			}
		}
		wg.Add(1)
		if parallel {
			go f()
		} else {
			f()
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

func sshArgs(inv *inventory.Inventory, n inventory.Node) []string {
	s := inv.SSHFor(n)
	args := []string{"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-p", strconv.Itoa(s.Port)}
	if s.KeyFile != "" {
		args = append(args, "-i", expand(s.KeyFile), "-o", "IdentitiesOnly=yes")
	}
	if s.KnownHostsFile != "" {
		args = append(args, "-o", "UserKnownHostsFile="+expand(s.KnownHostsFile))
	}
	if b := s.Bastion; b != nil {
		args = append(args, "-J", fmt.Sprintf("%s@%s:%d", b.User, b.Address, b.Port))
	}
	return append(args, s.User+"@"+n.Address)
}

func expand(p string) string {
	if strings.HasPrefix(p, "~/") {
		if h, err := os.UserHomeDir(); err == nil {
			return filepath.Join(h, p[2:])
		}
	}
	return p
}
