package playbook

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"sigs.k8s.io/yaml"

	"github.com/spf13/cobra"

	playbooks "github.com/kbootstrap/kbootstrap/ansible-free-playbooks"
	"github.com/kbootstrap/kbootstrap/cmd/kbootstrap/internal/cli"
	"github.com/kbootstrap/kbootstrap/node"
)

type runFlags struct {
	check    bool
	extra    []string
	binaries string
	images   string
}

// NewCommand returns `playbook` with run and list.
func NewCommand(g *cli.Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "playbook", Short: "Run ansible-free playbooks"}
	cmd.AddCommand(newRun(g), newList(g))
	return cmd
}

func newRun(g *cli.Globals) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run FILE|NAME [--check] [-e key=value]...",
		Short: "Run a playbook file or a shipped playbook on the selected nodes",
		Long: `Run a playbook (a YAML file, or the name of a shipped playbook: see
"kbootstrap playbook list") on the nodes of the selection that its hosts match.
Progress is one line per host per task ("cp1 | changed | config"; on stderr
with -o json|yaml), then a recap per host. --check reports what would change
and changes nothing. A failing host stops only its own tasks (unless the play
sets any_errors_fatal); the exit code is 2 when any host failed.

--binaries DIR and --images DIR set the vars binaries and images to DIR made
absolute (prepare-node uploads kubeadm, kubelet and kubectl from the first and
imports the image tarballs of the second into containerd). The var
kbootstrap_binary is this kbootstrap executable unless -e or the playbook
gives one (a playbook that installs kbootstrap on the nodes uses it).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pb, err := playbooks.Load(args[0])
			if err != nil {
				return err
			}
			extra, err := f.vars(pb)
			if err != nil {
				return err
			}
			inv, nodes, pool, err := g.Open()
			if err != nil {
				return err
			}
			defer pool.Close()
			progress := g.Streams.Out
			if g.Output != cli.OutputTable {
				progress = g.Streams.Err
			}
			recap, runErr := playbooks.Run(cmd.Context(), pb, playbooks.Options{
				Inventory:   inv,
				Nodes:       nodes,
				Connector:   pool,
				Concurrency: g.Concurrency,
				Check:       f.check,
				ExtraVars:   extra,
				Reporter:    progressPrinter(node.NewSyncWriter(progress)),
				Redactor:    g.Redactor,
			})
			return report(g, recap, runErr)
		},
	}
	cmd.Flags().BoolVar(&f.check, "check", false, "report what would change; change nothing")
	cmd.Flags().StringArrayVarP(&f.extra, "extra-vars", "e", nil, "set a var (key=value), or the vars of a YAML file (@FILE: keeps secrets off the command line), over the playbook's vars")
	cmd.Flags().StringVar(&f.binaries, "binaries", "", "set the var binaries: a local directory holding kubeadm, kubelet and kubectl (prepare-node, air-gapped)")
	cmd.Flags().StringVar(&f.images, "images", "", "set the var images: a local directory of image tarballs to import into containerd (prepare-node)")
	return cmd
}

// vars returns the vars the command line sets: -e, then --binaries and
// --images (absolute: relative paths in a shipped playbook would name its
// embedded files), then kbootstrap_binary when nothing else gave it.
func (f *runFlags) vars(pb *playbooks.Playbook) (map[string]string, error) {
	extra, err := parseExtraVars(f.extra)
	if err != nil {
		return nil, err
	}
	for _, d := range []struct{ flag, dir string }{{"binaries", f.binaries}, {"images", f.images}} {
		if d.dir == "" {
			continue
		}
		abs, err := localDir(d.flag, d.dir)
		if err != nil {
			return nil, err
		}
		if v, ok := extra[d.flag]; ok && v != abs && v != d.dir {
			return nil, fmt.Errorf("--%s %s and -e %s=%s disagree", d.flag, d.dir, d.flag, v)
		}
		extra[d.flag] = abs
	}
	if _, ok := extra[kbootstrapBinaryVar]; !ok {
		if v := pb.Vars[kbootstrapBinaryVar]; v == nil || fmt.Sprint(v) == "" {
			if exe, err := os.Executable(); err == nil {
				if exe, err = filepath.EvalSymlinks(exe); err == nil {
					extra[kbootstrapBinaryVar] = exe
				}
			}
		}
	}
	return extra, nil
}

// kbootstrapBinaryVar is the var the command fills with its own executable.
const kbootstrapBinaryVar = "kbootstrap_binary"

// localDir checks that dir is a directory and makes it absolute.
func localDir(flag, dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("--%s: %w", flag, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("--%s: %w", flag, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("--%s %s: not a directory", flag, dir)
	}
	return abs, nil
}

// parseExtraVars reads -e key=value and -e @FILE (a YAML map of vars: the
// way to hand a playbook a secret without putting it on kbootstrap's command
// line, where every user of the workstation can read it).
func parseExtraVars(kvs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range kvs {
		if file, ok := strings.CutPrefix(kv, "@"); ok {
			if err := varsFile(file, out); err != nil {
				return nil, err
			}
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("-e %q: want key=value or @FILE", kv)
		}
		out[k] = v
	}
	return out, nil
}

// varsFile adds the vars of a YAML file (a map of names to scalars) to out.
func varsFile(file string, out map[string]string) error {
	raw, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("-e @%s: %w", file, err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("-e @%s: not a YAML map of vars: %w", file, err)
	}
	for k, v := range m {
		switch v.(type) {
		case string, bool, float64, int64, nil:
			if v == nil {
				v = ""
			}
			out[k] = fmt.Sprint(v)
		default:
			return fmt.Errorf("-e @%s: %s: want a string, number or boolean, not %T", file, k, v)
		}
	}
	return nil
}

// progressPrinter prints "HOST | STATUS | TASK[: message]".
func progressPrinter(w io.Writer) playbooks.Reporter {
	return playbooks.ReporterFunc(func(e playbooks.Event) {
		status := string(e.Status)
		if e.Ignored {
			status = "failed (ignored)"
		}
		task := e.Task
		if e.Handler {
			task = "handler: " + task
		}
		line := fmt.Sprintf("%s | %s | %s", e.Host, status, task)
		if msg := firstLine(e.Msg); msg != "" && (e.Status == playbooks.StatusFailed || e.Status == playbooks.StatusChanged) {
			line += ": " + msg
		}
		fmt.Fprintln(w, line)
	})
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// report prints the recap (Ansible's PLAY RECAP, or JSON/YAML), the error
// of each failed host on stderr, and turns failures into exit code 2.
func report(g *cli.Globals, recap *playbooks.Recap, runErr error) error {
	if recap == nil {
		return runErr
	}
	encoded, err := g.Encode(recap)
	if err != nil {
		return err
	}
	if !encoded {
		fmt.Fprintln(g.Streams.Out, "\nPLAY RECAP")
		tw := tabwriter.NewWriter(g.Streams.Out, 0, 0, 1, ' ', 0)
		for _, name := range recap.Order {
			s := recap.Hosts[name]
			fmt.Fprintf(tw, "%s\t: ok=%d\tchanged=%d\tfailed=%d\tskipped=%d", name, s.OK, s.Changed, s.Failed, s.Skipped)
			if s.Ignored > 0 {
				fmt.Fprintf(tw, "\tignored=%d", s.Ignored)
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
	}
	if runErr == nil {
		return nil
	}
	nodeErrs := node.NodeErrors(runErr)
	for _, ne := range nodeErrs {
		fmt.Fprintf(g.Streams.Err, "✗ %s\n", g.Redactor.String(ne.Error()))
	}
	if len(nodeErrs) == 0 {
		return runErr
	}
	return cli.Exit(2)
}

func newList(g *cli.Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the shipped playbooks",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			list, err := playbooks.List()
			if err != nil {
				return err
			}
			if ok, err := g.Encode(list); ok || err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.Streams.Out, 0, 0, 2, ' ', 0)
			for _, i := range list {
				fmt.Fprintf(tw, "%s\t%s\n", i.Name, i.Description)
			}
			return tw.Flush()
		},
	}
}
