package playbooks

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/node"
)

// Status is the outcome of a task on one host.
type Status string

// The outcomes of a task.
const (
	StatusOK      Status = "ok"
	StatusChanged Status = "changed"
	StatusFailed  Status = "failed"
	StatusSkipped Status = "skipped"
)

// Result is what a module did on one host.
type Result struct {
	Status Status
	Msg    string // one line for the progress output
	Stdout string
	Stderr string
	RC     int
}

// Event is one host's outcome of one task, handler or the fact gathering.
type Event struct {
	Host     string
	Task     string
	Line     int  // the task's line in the playbook (0 for fact gathering)
	Handler  bool // the task is a handler
	Status   Status
	Ignored  bool   // failed, but ignore_errors let the host go on
	Msg      string // redacted; "" when the task has no_log
	Duration time.Duration
}

// Reporter receives progress; it is called from many goroutines at once.
type Reporter interface {
	Report(Event)
}

// ReporterFunc adapts a function to Reporter.
type ReporterFunc func(Event)

// Report implements Reporter.
func (f ReporterFunc) Report(e Event) { f(e) }

// HostStats counts the outcomes of one host as Ansible's recap does: ok
// counts every task that succeeded, changed or not.
type HostStats struct {
	OK      int `json:"ok"`
	Changed int `json:"changed"`
	Failed  int `json:"failed"`
	Skipped int `json:"skipped"`
	// Ignored counts failures that ignore_errors let pass (not in Failed).
	Ignored int `json:"ignored,omitempty"`
}

// Recap is the per-host summary of a run, in the JSON shape of
// `kbootstrap playbook run -o json`.
type Recap struct {
	Hosts map[string]*HostStats `json:"hosts"`
	// Order lists the hosts in inventory order.
	Order []string `json:"-"`
}

// TaskError is a task that failed on a host; the run's error joins one
// *node.NodeError per failed host wrapping it.
type TaskError struct {
	File string
	Line int
	Task string
	Err  error
}

func (e *TaskError) Error() string {
	return fmt.Sprintf("%s:%d: task %q: %v", e.File, e.Line, e.Task, e.Err)
}

func (e *TaskError) Unwrap() error { return e.Err }

// Options configure Run.
type Options struct {
	Inventory *inventory.Inventory
	// Nodes is the selection (--host, --role); nil means every node of the
	// inventory. The play runs on the nodes of the selection that match
	// its hosts.
	Nodes       []inventory.Node
	Connector   node.Connector
	Concurrency int // hosts at once; < 1 means 20
	Check       bool
	// ExtraVars override the playbook's vars (-e key=value).
	ExtraVars map[string]string
	Reporter  Reporter
	// Redactor collects the values of secret_vars; progress and errors are
	// redacted through it. May be nil.
	Redactor *node.Redactor
}

// hostState is one host's part of a run.
type hostState struct {
	inv        inventory.Node
	n          node.Node
	facts      map[string]any
	registered map[string]any
	notified   map[string]bool
	failed     bool
	err        error
	stats      *HostStats
}

type runner struct {
	pb        *Playbook
	opts      Options
	vars      map[string]any
	inventory map[string]any
	secrets   []string
	local     *localFiles
	abort     bool
	mu        sync.Mutex
}

// Run runs pb on the matching nodes. The recap always holds every host of
// the play; the error joins a *node.NodeError per host that failed (its task
// error names the playbook file, the line and the task), or is a problem
// with the options.
func Run(ctx context.Context, pb *Playbook, opts Options) (*Recap, error) {
	if opts.Inventory == nil || opts.Connector == nil {
		return nil, errors.New("playbook: an inventory and a connector are required")
	}
	if opts.Concurrency < 1 {
		opts.Concurrency = 20
	}
	if opts.Reporter == nil {
		opts.Reporter = ReporterFunc(func(Event) {})
	}
	hosts, err := matchHosts(pb, opts)
	if err != nil {
		return nil, err
	}
	r := &runner{pb: pb, opts: opts, vars: maps.Clone(pb.Vars), inventory: inventoryData(opts.Inventory),
		local: &localFiles{sums: map[string]localSum{}, refs: map[string][]string{}}}
	if r.vars == nil {
		r.vars = map[string]any{}
	}
	for k, v := range opts.ExtraVars {
		r.vars[k] = v
	}
	for _, name := range pb.SecretVars {
		if v, ok := r.vars[name]; ok {
			if s := fmt.Sprint(v); s != "" {
				r.secrets = append(r.secrets, s)
			}
		}
	}
	if opts.Redactor != nil {
		opts.Redactor.Add(r.secrets...)
	}

	recap := &Recap{Hosts: map[string]*HostStats{}}
	states := make([]*hostState, len(hosts))
	for i, h := range hosts {
		states[i] = &hostState{inv: h, registered: map[string]any{}, notified: map[string]bool{}, stats: &HostStats{}}
		recap.Hosts[h.Name] = states[i].stats
		recap.Order = append(recap.Order, h.Name)
	}
	batch := pb.Serial
	if batch <= 0 {
		batch = len(states)
	}
	for start := 0; start < len(states) && !r.abort && ctx.Err() == nil; start += batch {
		b := states[start:min(start+batch, len(states))]
		r.runBatch(ctx, b)
		if !slices.ContainsFunc(b, func(h *hostState) bool { return !h.failed }) {
			// Ansible stops a serial play when a whole batch failed.
			break
		}
	}
	var errs []error
	for _, h := range states {
		if h.failed {
			errs = append(errs, &node.NodeError{Node: h.inv.Name, Err: h.err})
		}
	}
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	return recap, errors.Join(errs...)
}

// matchHosts returns the nodes of the selection that the play's hosts name.
func matchHosts(pb *Playbook, opts Options) ([]inventory.Node, error) {
	sel := opts.Nodes
	if sel == nil {
		sel = opts.Inventory.Nodes
	}
	for _, h := range pb.Hosts {
		known := h == "all" || slices.Contains(inventory.Roles, inventory.Role(h))
		if _, ok := opts.Inventory.Node(h); ok {
			known = true
		}
		if !known {
			return nil, fmt.Errorf("%s: hosts: %q is neither all, a role nor a node of %s", pb.File, h, opts.Inventory.File)
		}
	}
	var out []inventory.Node
	for _, n := range sel {
		if slices.Contains(pb.Hosts, "all") || slices.Contains(pb.Hosts, string(n.Role)) || slices.Contains(pb.Hosts, n.Name) {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no selected node matches hosts: %s", pb.File, strings.Join(pb.Hosts, ", "))
	}
	return out, nil
}

func (r *runner) runBatch(ctx context.Context, batch []*hostState) {
	// Connect and gather facts, once per node.
	r.forEach(ctx, batch, func(ctx context.Context, h *hostState) {
		start := time.Now()
		err := r.prepare(ctx, h)
		ev := Event{Host: h.inv.Name, Task: "gather facts", Status: StatusOK, Duration: time.Since(start)}
		if err != nil {
			h.failed = true
			h.err = err
			h.stats.Failed++
			ev.Status, ev.Msg = StatusFailed, r.redact(err.Error())
		} else if !r.pb.GatherFacts {
			return
		}
		r.opts.Reporter.Report(ev)
	})
	for _, t := range r.pb.Tasks {
		if r.abort || ctx.Err() != nil {
			return
		}
		failedBefore := countFailed(batch)
		r.forEach(ctx, batch, func(ctx context.Context, h *hostState) { r.runTask(ctx, h, t, false) })
		if r.pb.AnyErrorsFatal && countFailed(batch) > failedBefore {
			r.abort = true
			return
		}
	}
	for _, t := range r.pb.Handlers {
		if ctx.Err() != nil {
			return
		}
		var notified []*hostState
		for _, h := range batch {
			if h.notified[t.Name] {
				notified = append(notified, h)
			}
		}
		r.forEach(ctx, notified, func(ctx context.Context, h *hostState) { r.runTask(ctx, h, t, true) })
	}
}

func countFailed(hs []*hostState) int {
	n := 0
	for _, h := range hs {
		if h.failed {
			n++
		}
	}
	return n
}

// forEach runs fn on the hosts that have not failed, at most Concurrency at
// a time, and waits for all of them.
func (r *runner) forEach(ctx context.Context, hosts []*hostState, fn func(context.Context, *hostState)) {
	sem := make(chan struct{}, r.opts.Concurrency)
	var wg sync.WaitGroup
	for _, h := range hosts {
		if h.failed {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			fn(ctx, h)
		}()
	}
	wg.Wait()
}

func (r *runner) prepare(ctx context.Context, h *hostState) error {
	n, err := r.opts.Connector.Connect(ctx, h.inv)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	h.n = n
	h.facts = map[string]any{}
	if !r.pb.GatherFacts {
		return nil
	}
	facts, err := gatherFacts(ctx, n)
	if err != nil {
		return fmt.Errorf("%s: gather facts: %w", r.pb.File, err)
	}
	h.facts = facts
	return nil
}

// data is what templates see on host h.
func (r *runner) data(h *hostState) map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return map[string]any{
		"vars":       r.vars,
		"facts":      h.facts,
		"registered": maps.Clone(h.registered),
		"host":       nodeData(h.inv),
		"inventory":  r.inventory,
		"check":      r.opts.Check,
	}
}

func (r *runner) redact(s string) string {
	s = node.RedactString(s, r.secrets)
	return r.opts.Redactor.String(s)
}

func (r *runner) runTask(ctx context.Context, h *hostState, t *Task, handler bool) {
	start := time.Now()
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = DefaultTaskTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := r.execTask(ctx, h, t)
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("timed out after %s (set the task's timeout): %w", timeout, err)
	}
	if err != nil {
		res.Status = StatusFailed
		res.Msg = err.Error()
	}
	ev := Event{Host: h.inv.Name, Task: t.Name, Line: t.Line, Handler: handler, Status: res.Status, Msg: r.redact(res.Msg), Duration: time.Since(start)}
	if t.NoLog {
		ev.Msg = ""
	}
	switch res.Status {
	case StatusOK:
		h.stats.OK++
	case StatusChanged:
		h.stats.OK++
		h.stats.Changed++
		for _, n := range t.Notify {
			h.notified[n] = true
		}
	case StatusSkipped:
		h.stats.Skipped++
	case StatusFailed:
		if t.IgnoreErrors {
			h.stats.Ignored++
			ev.Ignored = true
		} else {
			h.stats.Failed++
			h.failed = true
			if err == nil {
				err = errors.New(res.Msg)
			}
			if t.NoLog {
				err = errors.New("failed (output hidden by no_log)")
			}
			h.err = &TaskError{File: r.pb.File, Line: t.Line, Task: t.Name, Err: redactedError{err, r.redact(err.Error())}}
		}
	}
	if t.Register != "" {
		reg := registeredResult(res)
		if t.NoLog {
			reg["stdout"], reg["stderr"], reg["msg"] = "", "", ""
			reg["stdout_lines"] = []string{}
		}
		r.mu.Lock()
		h.registered[t.Register] = reg
		r.mu.Unlock()
	}
	r.opts.Reporter.Report(ev)
}

// redactedError shows a redacted message and still unwraps to the cause.
type redactedError struct {
	err error
	msg string
}

func (e redactedError) Error() string { return e.msg }
func (e redactedError) Unwrap() error { return e.err }

// execTask evaluates when, renders the module's arguments and runs it.
func (r *runner) execTask(ctx context.Context, h *hostState, t *Task) (Result, error) {
	data := r.data(h)
	if t.When != "" {
		s, err := render("when", t.When, data)
		if err != nil {
			return Result{}, fmt.Errorf("when: %w", err)
		}
		if !truthy(s) {
			return Result{Status: StatusSkipped, Msg: "when: false"}, nil
		}
	}
	m := cloneModule(t.args)
	if err := renderStruct(reflect.ValueOf(m), func(s string) (string, error) { return render(t.Module, s, data) }); err != nil {
		return Result{}, fmt.Errorf("%s: %w", t.Module, err)
	}
	if err := m.validate(asRendered); err != nil {
		return Result{}, fmt.Errorf("%s: %w", t.Module, err)
	}
	n := h.n
	become := r.pb.Become
	if t.Become != nil {
		become = *t.Become
	}
	if become {
		n = node.Sudo(n)
	}
	e := &env{n: n, host: h.inv, check: r.opts.Check, fs: r.pb.FS, data: data, noLog: t.NoLog, secrets: r.secrets, local: r.local}
	res, err := m.run(ctx, e)
	if err != nil {
		return res, fmt.Errorf("%s: %w", t.Module, err)
	}
	if t.ChangedWhen != "" && res.Status != StatusFailed && res.Status != StatusSkipped {
		// The task's own result, as .result and under its register name.
		data["result"] = registeredResult(res)
		if t.Register != "" {
			reg := maps.Clone(data["registered"].(map[string]any))
			reg[t.Register] = data["result"]
			data["registered"] = reg
		}
		s, err := render("changed_when", t.ChangedWhen, data)
		if err != nil {
			return res, fmt.Errorf("changed_when: %w", err)
		}
		if truthy(s) {
			res.Status = StatusChanged
		} else {
			res.Status = StatusOK
		}
	}
	return res, nil
}

// registeredResult is what register keeps of a result.
func registeredResult(res Result) map[string]any {
	stdout := strings.TrimRight(res.Stdout, "\n")
	lines := []string{}
	if stdout != "" {
		lines = strings.Split(stdout, "\n")
	}
	return map[string]any{
		"stdout":       stdout,
		"stderr":       strings.TrimRight(res.Stderr, "\n"),
		"stdout_lines": lines,
		"rc":           res.RC,
		"msg":          res.Msg,
		"changed":      res.Status == StatusChanged,
		"failed":       res.Status == StatusFailed,
		"skipped":      res.Status == StatusSkipped,
	}
}

func nodeData(n inventory.Node) map[string]any {
	return map[string]any{
		"name":            n.Name,
		"address":         n.Address,
		"internalAddress": n.InternalIP(),
		"role":            string(n.Role),
	}
}

// inventoryData is .inventory in templates.
func inventoryData(inv *inventory.Inventory) map[string]any {
	list := func(nodes []inventory.Node) []map[string]any {
		out := []map[string]any{}
		for _, n := range nodes {
			out = append(out, nodeData(n))
		}
		return out
	}
	return map[string]any{
		"name":              inv.Name,
		"kubernetesVersion": inv.KubernetesVersion,
		"endpoint":          inv.Endpoint(),
		"nodes":             list(inv.Nodes),
		"controlPlanes":     list(inv.ByRole(inventory.RoleControlPlane)),
		"workers":           list(inv.ByRole(inventory.RoleWorker)),
		"loadbalancers":     list(inv.ByRole(inventory.RoleLoadBalancer)),
	}
}
