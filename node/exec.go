package node

import (
	"context"
	"errors"
	"io"

	"github.com/kbootstrap/kbootstrap/inventory"
)

// ExecResult is one node's outcome of RunAll, in the JSON shape of
// `kbootstrap exec`.
type ExecResult struct {
	Node     string `json:"node"`
	ExitCode int    `json:"exitCode"`
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	Error    string `json:"error"`
}

// RunAllOptions configure RunAll.
type RunAllOptions struct {
	Concurrency int
	Sudo        bool
	// Stdout and Stderr, when set, receive every line as it arrives,
	// prefixed "NAME: " and redacted through Redactor.
	Stdout, Stderr io.Writer
	Redactor       *Redactor
}

// RunAll runs cmd on every node and keeps every node's result. A node that
// could not be reached gets ExitCode -1. The error joins a *NodeError per
// node that failed (unreachable, or a non-zero exit).
func RunAll(ctx context.Context, c Connector, nodes []inventory.Node, cmd string, opts RunAllOptions) ([]ExecResult, error) {
	return Parallel(ctx, nodes, opts.Concurrency, func(ctx context.Context, in inventory.Node) (ExecResult, error) {
		r := ExecResult{Node: in.Name, ExitCode: -1}
		n, err := c.Connect(ctx, in)
		if err != nil {
			r.Error = err.Error()
			return r, err
		}
		if opts.Sudo {
			n = Sudo(n)
		}
		var eo []ExecOption
		var flush []*LineWriter
		if opts.Stdout != nil {
			w := PrefixWriter(opts.Stdout, in.Name+": ", opts.Redactor)
			flush = append(flush, w)
			eo = append(eo, StreamStdout(w))
		}
		if opts.Stderr != nil {
			w := PrefixWriter(opts.Stderr, in.Name+": ", opts.Redactor)
			flush = append(flush, w)
			eo = append(eo, StreamStderr(w))
		}
		res, err := n.Run(ctx, cmd, eo...)
		for _, w := range flush {
			w.Flush()
		}
		r.Stdout = opts.Redactor.String(string(res.Stdout))
		r.Stderr = opts.Redactor.String(string(res.Stderr))
		var ee *ExitError
		switch {
		case err == nil:
			r.ExitCode = 0
		case errors.As(err, &ee):
			r.ExitCode = ee.ExitCode
			r.Error = opts.Redactor.String(err.Error())
		default:
			r.Error = opts.Redactor.String(err.Error())
		}
		return r, err
	})
}
