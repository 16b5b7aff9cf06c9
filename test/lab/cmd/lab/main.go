package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/kbootstrap/kbootstrap/test/lab"
)

func main() {
	os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: lab COMMAND [FLAGS] [ARGS]

commands:
  up        bring the lab up (or add to / restart it): --cp, --workers, --lb, --nodes, --node, --subnet, --subnet2, --artifacts, --kubernetes
  down      remove everything of the lab (also after a crash; keeps DIR/artifacts and the rootfs cache)
  status    list the nodes
  stop NODE | start NODE | partition NODE | heal NODE
  routes [--from NODE] [NODE=CIDR...]   route each node's pod CIDR to it from every other node
            (--from: read the CIDRs the controller-manager assigned, with kubectl on NODE)
  exec NODE -- CMD...   run CMD inside NODE as root (no SSH involved)
  ssh [--user U] NODE [-- CMD...]   ssh to NODE with the lab's key and known_hosts

common flags: --dir DIR (default $KBOOTSTRAP_LAB_DIR or <repo>/.lab), --id ID (default: from DIR's state, else "lab")
`

// Main runs the lab command and returns its exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c := &cli{stdout: stdout, stderr: stderr}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "up":
		err = c.up(ctx, rest)
	case "down":
		err = c.down(ctx, rest)
	case "status":
		err = c.status(rest)
	case "stop", "start", "partition", "heal":
		err = c.nodeOp(ctx, cmd, rest)
	case "routes":
		err = c.routes(ctx, rest)
	case "exec":
		return c.exec(ctx, rest)
	case "ssh":
		return c.ssh(rest)
	default:
		fmt.Fprintf(stderr, "lab: unknown command %q\n%s", cmd, usage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "lab %s: %v\n", args[0], err)
		var u usageError
		if errors.As(err, &u) {
			return 2
		}
		return 1
	}
	return 0
}

type usageError struct{ error }

type cli struct {
	stdout, stderr io.Writer
	dir, id        string
}

func (c *cli) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("lab "+name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.StringVar(&c.dir, "dir", defaultDir(), "lab state directory")
	fs.StringVar(&c.id, "id", "", `lab ID, [a-z0-9]{1,5} (default: from the state in --dir, else "lab")`)
	return fs
}

func defaultDir() string {
	if d := os.Getenv("KBOOTSTRAP_LAB_DIR"); d != "" {
		return d
	}
	if root := lab.RepoRoot(); root != "" {
		return filepath.Join(root, ".lab")
	}
	return ".lab"
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

type nodeFlags []lab.NodeSpec

func (n *nodeFlags) String() string { return fmt.Sprint(*n) }

// Set parses NAME[:ROLE[:NETS]], NETS like 0 or 0,1.
func (n *nodeFlags) Set(s string) error {
	parts := strings.Split(s, ":")
	if len(parts) > 3 || parts[0] == "" {
		return fmt.Errorf("want NAME[:ROLE[:NETS]], got %q", s)
	}
	spec := lab.NodeSpec{Name: parts[0], Role: lab.RoleWorker}
	if len(parts) > 1 && parts[1] != "" {
		spec.Role = parts[1]
	}
	if len(parts) > 2 {
		for _, k := range strings.Split(parts[2], ",") {
			v, err := strconv.Atoi(k)
			if err != nil {
				return fmt.Errorf("bad network %q in %q", k, s)
			}
			spec.Networks = append(spec.Networks, v)
		}
	}
	*n = append(*n, spec)
	return nil
}

func (c *cli) up(ctx context.Context, args []string) error {
	fs := c.flags("up")
	cp := fs.Int("cp", envInt("LAB_CP", 3), "control-plane nodes cp1..cpN ($LAB_CP)")
	workers := fs.Int("workers", envInt("LAB_WORKERS", 0), "worker nodes worker1..workerN ($LAB_WORKERS)")
	lbs := fs.Int("lb", envInt("LAB_LB", 0), "load-balancer nodes lb1..lbN ($LAB_LB)")
	count := fs.Int("nodes", 0, "instead: N worker nodes node1..nodeN")
	var specs nodeFlags
	fs.Var(&specs, "node", "instead: a node NAME[:ROLE[:NETS]] (repeatable), e.g. bastion:worker:0,1")
	subnet := fs.String("subnet", "", "main bridge subnet (default "+lab.DefaultSubnet+")")
	subnet2 := fs.String("subnet2", "", "second bridge subnet (default "+lab.DefaultSubnet2+")")
	kubernetes := fs.Bool("kubernetes", os.Getenv("LAB_KUBERNETES") == "1",
		"Kubernetes nodes: systemd as PID 1, containerd, per-node cgroups ($LAB_KUBERNETES=1)")
	artifacts := fs.String("artifacts", "", "directory mounted read-only at /opt/kbootstrap/bin (default: DIR/artifacts/bin or <repo>/.lab/artifacts/bin if present)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	var nodes []lab.NodeSpec
	switch {
	case len(specs) > 0:
		nodes = specs
	case *count > 0:
		for i := 1; i <= *count; i++ {
			nodes = append(nodes, lab.NodeSpec{Name: fmt.Sprintf("node%d", i), Role: lab.RoleWorker})
		}
	default:
		add := func(n int, prefix, role string) {
			for i := 1; i <= n; i++ {
				nodes = append(nodes, lab.NodeSpec{Name: fmt.Sprintf("%s%d", prefix, i), Role: role})
			}
		}
		add(*cp, "cp", lab.RoleControlPlane)
		add(*workers, "worker", lab.RoleWorker)
		add(*lbs, "lb", lab.RoleLoadBalancer)
	}
	id := c.id
	if id == "" {
		if l, err := lab.Load(c.dir); err == nil {
			id = l.Config.ID
		}
	}
	start := time.Now()
	l, err := lab.Up(ctx, lab.Config{ID: id, Dir: c.dir, Subnet: *subnet, Subnet2: *subnet2,
		Nodes: nodes, ArtifactsDir: *artifacts, Kubernetes: *kubernetes, Log: c.stderr})
	if err != nil {
		return err
	}
	c.printNodes(l)
	fmt.Fprintf(c.stdout, "%d nodes up in %.1fs\ninventory: %s\nssh:       ssh -i %s -o UserKnownHostsFile=%s root@%s\n",
		len(l.Nodes), time.Since(start).Seconds(), l.InventoryFile, l.KeyFile, l.KnownHostsFile, l.Nodes[0].Addresses[0])
	return nil
}

func (c *cli) printNodes(l *lab.Lab) {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tADDRESSES\tHOST PID\tSTATE")
	for _, n := range l.Nodes {
		st := "stopped"
		if n.HostPID != 0 {
			st = "running"
			if !l.SSHListening(n.Name) {
				st = "running, sshd down (see " + filepath.Join(l.Config.Dir, "nodes", n.Name, "console.log") + ")"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", n.Name, n.Role, strings.Join(n.Addresses, ","), n.HostPID, st)
	}
	tw.Flush()
}

func (c *cli) down(ctx context.Context, args []string) error {
	fs := c.flags("down")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	start := time.Now()
	if l, err := lab.Load(c.dir); err == nil && (c.id == "" || c.id == l.Config.ID) {
		l.Config.Log = c.stderr
		err := l.Down(ctx)
		if err == nil {
			fmt.Fprintf(c.stderr, "lab: down (%.1fs)\n", time.Since(start).Seconds())
		}
		return err
	}
	// No (readable) state: find everything by the ID.
	if err := lab.Down(ctx, c.dir, c.id); err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "lab: down by ID (%.1fs)\n", time.Since(start).Seconds())
	return nil
}

func (c *cli) load() (*lab.Lab, error) {
	l, err := lab.Load(c.dir)
	if err != nil {
		return nil, err
	}
	if c.id != "" && c.id != l.Config.ID {
		return nil, fmt.Errorf("%s holds lab %q, not %q", c.dir, l.Config.ID, c.id)
	}
	l.Config.Log = c.stderr
	return l, nil
}

func (c *cli) status(args []string) error {
	fs := c.flags("status")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	l, err := c.load()
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "lab %s in %s (subnet %s)\n", l.Config.ID, l.Config.Dir, l.Config.Subnet)
	c.printNodes(l)
	return nil
}

func (c *cli) nodeOp(ctx context.Context, op string, args []string) error {
	fs := c.flags(op)
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() != 1 {
		return usageError{fmt.Errorf("want exactly one NODE")}
	}
	l, err := c.load()
	if err != nil {
		return err
	}
	l.Config.Log = c.stderr
	name := fs.Arg(0)
	switch op {
	case "stop":
		return l.Stop(ctx, name)
	case "start":
		return l.Start(ctx, name)
	case "partition":
		return l.Partition(ctx, name)
	default:
		return l.Heal(ctx, name)
	}
}

// routes adds the lab routes between the nodes' pod CIDRs, given as NODE=CIDR or read from the
// cluster (kubectl on the --from node, with /etc/kubernetes/admin.conf).
func (c *cli) routes(ctx context.Context, args []string) error {
	fs := c.flags("routes")
	from := fs.String("from", "", "a control-plane node to read the nodes' pod CIDRs from (kubectl get nodes)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	l, err := c.load()
	if err != nil {
		return err
	}
	cidrs := map[string]string{}
	if *from != "" {
		out, err := l.Exec(ctx, *from, "kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf", "get", "nodes", "-o",
			`jsonpath={range .items[*]}{.metadata.name}={.spec.podCIDR}{"\n"}{end}`)
		if err != nil {
			return err
		}
		for _, line := range strings.Fields(string(out)) {
			if name, cidr, ok := strings.Cut(line, "="); ok && cidr != "" {
				cidrs[name] = cidr
			}
		}
	}
	for _, a := range fs.Args() {
		name, cidr, ok := strings.Cut(a, "=")
		if !ok {
			return usageError{fmt.Errorf("want NODE=CIDR, got %q", a)}
		}
		cidrs[name] = cidr
	}
	if len(cidrs) == 0 {
		return usageError{fmt.Errorf("no pod CIDRs: give NODE=CIDR or --from NODE")}
	}
	return l.RoutePodCIDRs(ctx, cidrs)
}

// exec runs the command inside the node with the terminal's stdin/stdout/stderr; its exit status
// is ours.
func (c *cli) exec(ctx context.Context, args []string) int {
	fs := c.flags("exec")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if len(dropDashes(fs.Args()[min(1, fs.NArg()):])) == 0 {
		fmt.Fprintln(c.stderr, "lab exec: want NODE -- CMD...")
		return 2
	}
	l, err := c.load()
	if err != nil {
		fmt.Fprintf(c.stderr, "lab exec: %v\n", err)
		return 1
	}
	argv, err := l.ExecArgs(fs.Arg(0), dropDashes(fs.Args()[1:])...)
	if err != nil {
		fmt.Fprintf(c.stderr, "lab exec: %v\n", err)
		return 1
	}
	return runAttached(ctx, argv, c.stdout, c.stderr)
}

func (c *cli) ssh(args []string) int {
	fs := c.flags("ssh")
	user := fs.String("user", "root", "user to log in as (root or vagrant)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() < 1 {
		fmt.Fprintln(c.stderr, "lab ssh: want NODE [-- CMD...]")
		return 2
	}
	l, err := c.load()
	if err != nil {
		fmt.Fprintf(c.stderr, "lab ssh: %v\n", err)
		return 1
	}
	argv, err := l.SSHArgs(fs.Arg(0), *user)
	if err != nil {
		fmt.Fprintf(c.stderr, "lab ssh: %v\n", err)
		return 1
	}
	if fs.NArg() == 1 {
		// Interactive: no BatchMode prompts matter, but a tty does.
		argv = append(argv[:1], append([]string{"-t"}, argv[1:]...)...)
	}
	return runAttached(context.Background(), append(argv, dropDashes(fs.Args()[1:])...), c.stdout, c.stderr)
}

// dropDashes removes the "--" that separates NODE from CMD (flag parsing stops at NODE and keeps it).
func dropDashes(args []string) []string {
	if len(args) > 0 && args[0] == "--" {
		return args[1:]
	}
	return args
}

func runAttached(ctx context.Context, argv []string, stdout, stderr io.Writer) int {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		fmt.Fprintf(stderr, "lab: %v\n", err)
		return 1
	}
	return 0
}
