package certs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/kbootstrap/kbootstrap/cmd/kbootstrap/internal/cli"
	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/kubeadm"
	"github.com/kbootstrap/kbootstrap/node"
	"github.com/kbootstrap/kbootstrap/pki"
)

// NewCommand returns `certs` and its subcommands.
func NewCommand(g *cli.Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Audit, renew and schedule the renewal of the control planes' certificates",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newCheck(g), newRenew(g), newSchedule(g))
	return cmd
}

type checkFlags struct {
	pkiDir, kubeconfigDir, manifestsDir string
	nodeName, dnsDomain, kubeletPKIDir  string
	warnWithin, failWithin              days
	format, out                         string
}

func newCheck(g *cli.Globals) *cobra.Command {
	f := &checkFlags{warnWithin: days(pki.DefaultWarnWithin), failWithin: days(pki.DefaultFailWithin)}
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Audit every certificate and kubeconfig of every control plane as kubeadm makes them",
		Long: `Audit every certificate, key and kubeconfig kubeadm writes on each control plane of
the inventory (read over SSH, through sudo for a non-root user), or in local
directories with --pki-dir (cron on the node itself, or a copy).

Exit status: 0 all ok, 1 warnings only, 2 a failure, an unreadable node or bad input.`,
		Example: `  kbootstrap certs check
  kbootstrap certs check --pki-dir /etc/kubernetes/pki --format prom --out /var/lib/node_exporter/textfile/kbootstrap_pki.prom`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCheck(cmd.Context(), g, f, cmd.Flags().Changed("manifests-dir"))
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.pkiDir, "pki-dir", "", "audit this local certificates directory instead of the inventory's control planes")
	fl.StringVar(&f.kubeconfigDir, "kubeconfig-dir", "", "local directory of admin.conf & co (default: the parent of --pki-dir)")
	fl.StringVar(&f.manifestsDir, "manifests-dir", "", "local static pod manifests, to learn the node's addresses and flags (default: <kubeconfig-dir>/manifests when it exists)")
	fl.StringVar(&f.nodeName, "node-name", "", "node name of the local directories (default: etcd.yaml's --name, else the host name)")
	fl.StringVar(&f.dnsDomain, "dns-domain", "", "cluster DNS domain, for the apiserver SAN check in local mode (default: not checked)")
	fl.StringVar(&f.kubeletPKIDir, "kubelet-pki-dir", "", "local directory of the kubelet's serving certificate (default: "+kubeadm.KubeletPKIDir+" when --pki-dir is "+kubeadm.PKIDir+", else not checked)")
	fl.Var(&f.warnWithin, "warn-within", "warn about certificates expiring within this time (e.g. 30d, 72h)")
	fl.Var(&f.failWithin, "fail-within", "fail on certificates expiring within this time (e.g. 7d, 36h)")
	fl.StringVar(&f.format, "format", "", "table, json, yaml or prom (default: -o)")
	fl.StringVar(&f.out, "out", "", "write the report to this file, atomically (mode 0644), instead of standard output")
	return cmd
}

func runCheck(ctx context.Context, g *cli.Globals, f *checkFlags, manifestsSet bool) error {
	if ctx == nil {
		ctx = context.Background()
	}
	format := f.format
	if format == "" {
		format = g.Output
	}
	switch format {
	case cli.OutputTable, cli.OutputJSON, cli.OutputYAML, "prom":
	default:
		return fmt.Errorf("--format %q: must be table, json, yaml or prom", format)
	}
	opts := pki.Options{Concurrency: g.Concurrency, WarnWithin: window(f.warnWithin), FailWithin: window(f.failWithin)}
	if f.pkiDir != "" {
		opts.Local = localSource(f, manifestsSet)
	} else {
		if f.kubeconfigDir != "" || manifestsSet || f.nodeName != "" || f.dnsDomain != "" || f.kubeletPKIDir != "" {
			return errors.New("--kubeconfig-dir, --manifests-dir, --node-name, --dns-domain and --kubelet-pki-dir need --pki-dir")
		}
		inv, nodes, pool, err := g.Open(inventory.RoleControlPlane)
		if err != nil {
			return err
		}
		defer pool.Close()
		opts.Inventory, opts.Nodes, opts.Connector = inv, nodes, pool
	}

	res, checkErr := pki.Check(ctx, opts)
	if res == nil {
		return checkErr
	}
	var buf bytes.Buffer
	if err := write(&buf, res, format, g.Verbose > 0); err != nil {
		return err
	}
	if f.out != "" {
		if err := node.NewLocal("local", g.Logger).WriteFile(ctx, f.out, &buf, node.WriteOptions{Mode: 0o644}); err != nil {
			return fmt.Errorf("--out %s: %w", f.out, err)
		}
	} else if _, err := io.Copy(g.Streams.Out, &buf); err != nil {
		return err
	}
	if checkErr != nil {
		return checkErr
	}
	return cli.Exit(res.Findings.ExitCode())
}

func localSource(f *checkFlags, manifestsSet bool) *pki.LocalSource {
	l := &pki.LocalSource{PKIDir: f.pkiDir, KubeconfigDir: f.kubeconfigDir, ManifestsDir: f.manifestsDir, NodeName: f.nodeName, DNSDomain: f.dnsDomain, KubeletPKIDir: f.kubeletPKIDir}
	if l.KubeletPKIDir == "" && filepath.Clean(f.pkiDir) == kubeadm.PKIDir {
		l.KubeletPKIDir = kubeadm.KubeletPKIDir
	}
	if l.KubeconfigDir == "" {
		l.KubeconfigDir = filepath.Dir(filepath.Clean(f.pkiDir))
	}
	if !manifestsSet {
		if fi, err := os.Stat(filepath.Join(l.KubeconfigDir, "manifests")); err == nil && fi.IsDir() {
			l.ManifestsDir = filepath.Join(l.KubeconfigDir, "manifests")
		}
	}
	return l
}

func write(w io.Writer, res *pki.Result, format string, verbose bool) error {
	switch format {
	case "prom":
		return res.WriteProm(w)
	case cli.OutputJSON:
		return res.Findings.WriteJSON(w)
	case cli.OutputYAML:
		var js bytes.Buffer
		if err := res.Findings.WriteJSON(&js); err != nil {
			return err
		}
		y, err := yaml.JSONToYAML(js.Bytes())
		if err != nil {
			return err
		}
		_, err = w.Write(y)
		return err
	}
	return res.WriteTable(w, verbose)
}

// window maps a flag to pki's threshold: an explicit 0 is no window (pki
// reads 0 as its default).
func window(d days) time.Duration {
	if d == 0 {
		return -1
	}
	return time.Duration(d)
}

// days is a duration flag that also takes days: 30d, 1d12h, 72h.
type days time.Duration

func (d *days) String() string {
	v := time.Duration(*d)
	if v%(24*time.Hour) == 0 && v != 0 {
		return strconv.FormatInt(int64(v/(24*time.Hour)), 10) + "d"
	}
	return v.String()
}

func (d *days) Set(s string) error {
	v, err := parseDays(s)
	if err != nil {
		return err
	}
	*d = days(v)
	return nil
}

func (d *days) Type() string { return "duration" }

// parseDays parses a Go duration with an optional leading count of days.
func parseDays(s string) (time.Duration, error) {
	var total time.Duration
	rest := strings.TrimSpace(s)
	if i := strings.IndexByte(rest, 'd'); i >= 0 {
		n, err := strconv.ParseUint(rest[:i], 10, 32)
		if err != nil {
			return 0, fmt.Errorf("%q: not a duration like 30d, 1d12h or 72h", s)
		}
		total = time.Duration(n) * 24 * time.Hour
		rest = rest[i+1:]
	}
	if rest != "" {
		v, err := time.ParseDuration(rest)
		if err != nil || v < 0 {
			return 0, fmt.Errorf("%q: not a duration like 30d, 1d12h or 72h", s)
		}
		total += v
	}
	if s == "" {
		return 0, errors.New("empty duration")
	}
	return total, nil
}
