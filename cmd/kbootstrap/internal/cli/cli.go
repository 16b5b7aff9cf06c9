package cli

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/kbootstrap/kbootstrap/progress"

	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/node"
)

// Streams are a command's standard streams.
type Streams struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

// Globals are the global flags and what a run shares.
type Globals struct {
	Inventory         string
	Output            string
	Concurrency       int
	Hosts             []string
	Roles             []string
	Verbose           int
	AcceptNewHostKeys bool
	ConnectTimeout    time.Duration

	Streams  Streams
	Logger   *slog.Logger
	Redactor *node.Redactor
}

// The output formats of -o.
const (
	OutputTable = "table"
	OutputJSON  = "json"
	OutputYAML  = "yaml"
)

// ExitError carries an exit code other than 2 (warnings: 1), or a failure
// (2) whose message was already printed when Err is nil.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// Exit returns nil for code 0 and an *ExitError otherwise: a command whose
// output already said everything (a report with warnings or failures).
func Exit(code int) error {
	if code == 0 {
		return nil
	}
	return &ExitError{Code: code}
}

// Validate checks the global flags.
func (g *Globals) Validate() error {
	switch g.Output {
	case OutputTable, OutputJSON, OutputYAML:
	default:
		return fmt.Errorf("--output %q: must be table, json or yaml", g.Output)
	}
	if g.Concurrency < 1 {
		return fmt.Errorf("--concurrency %d: must be at least 1", g.Concurrency)
	}
	for _, r := range g.Roles {
		if !slices.Contains(inventory.Roles, inventory.Role(r)) {
			return fmt.Errorf("--role %q: must be one of control-plane, worker, loadbalancer", r)
		}
	}
	return nil
}

// LoadInventory reads the -i file.
func (g *Globals) LoadInventory() (*inventory.Inventory, error) {
	return inventory.Load(g.Inventory)
}

// Select applies --host and --role to the inventory's nodes. roles further
// limits the result (e.g. control planes only); an empty result is an error.
func (g *Globals) Select(inv *inventory.Inventory, roles ...inventory.Role) ([]inventory.Node, error) {
	sel := inventory.Selector{Hosts: g.Hosts}
	for _, r := range g.Roles {
		sel.Roles = append(sel.Roles, inventory.Role(r))
	}
	nodes, err := inv.Select(sel)
	if err != nil {
		return nil, err
	}
	if len(roles) > 0 {
		nodes = slices.DeleteFunc(nodes, func(n inventory.Node) bool { return !slices.Contains(roles, n.Role) })
	}
	if len(nodes) == 0 {
		what := "the selection"
		if len(roles) > 0 {
			var rs []string
			for _, r := range roles {
				rs = append(rs, string(r))
			}
			what = strings.Join(rs, "/") + " nodes of the selection"
		}
		return nil, fmt.Errorf("%s: no node matches %s", inv.File, what)
	}
	return nodes, nil
}

// Open is the prologue of a command that works on nodes: the inventory, the
// selected nodes (limited to roles, when given) and the run's connection
// pool. Close the pool when done.
func (g *Globals) Open(roles ...inventory.Role) (*inventory.Inventory, []inventory.Node, *node.Pool, error) {
	inv, err := g.LoadInventory()
	if err != nil {
		return nil, nil, nil, err
	}
	nodes, err := g.Select(inv, roles...)
	if err != nil {
		return nil, nil, nil, err
	}
	return inv, nodes, g.Pool(inv), nil
}

// Pool returns the connection pool of this run for inv; close it when done.
func (g *Globals) Pool(inv *inventory.Inventory) *node.Pool {
	timeout := g.ConnectTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return node.NewPool(inv, node.PoolOptions{
		AcceptNewHostKeys: g.AcceptNewHostKeys,
		ConnectTimeout:    timeout,
		Logger:            g.Logger,
		Redactor:          g.Redactor,
		PassphrasePrompt:  node.TerminalPassphrasePrompt(os.Stdin, g.Streams.Err),
	})
}

// Status is the progress printer of a command on its output (on the error
// stream when the output is JSON or YAML, which stays a document): a line
// per node and step, a spinner only on a terminal, redacted. Close it when
// done.
func (g *Globals) Status() *progress.Status {
	w := g.Streams.Out
	if g.Output == OutputJSON || g.Output == OutputYAML {
		w = g.Streams.Err
	}
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	return progress.NewStatus(w, tty, g.Redactor)
}
