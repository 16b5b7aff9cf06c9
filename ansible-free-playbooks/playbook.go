package playbooks

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"
)

// Playbook is one parsed play.
type Playbook struct {
	// File names the playbook in errors ("loadbalancer.yaml" for a shipped one).
	File        string
	Name        string
	Description string
	// Hosts are "all", roles (control-plane, worker, loadbalancer) or node
	// names; a node matching any of them is in the play.
	Hosts []string
	// Serial is the batch size; 0 runs every host in one batch.
	Serial int
	// AnyErrorsFatal stops every host after the task on which one failed.
	AnyErrorsFatal bool
	// Become runs every task through sudo unless the task says otherwise.
	Become bool
	// GatherFacts gathers facts before the first task (default true).
	GatherFacts bool
	Vars        map[string]any
	// SecretVars name vars whose values are redacted wherever they would
	// be shown (progress, errors, registered output).
	SecretVars []string
	Tasks      []*Task
	Handlers   []*Task

	// FS resolves the local files of copy src, template src and upload src
	// (the playbook's directory); nil means the working directory.
	FS fs.FS
}

// Task is one task or handler.
type Task struct {
	Name   string
	Line   int    // line of the task in File
	Module string // the module's key (copy, shell, ...)
	args   module // the parsed arguments, before templating

	When         string
	ChangedWhen  string
	Become       *bool
	Register     string
	IgnoreErrors bool
	NoLog        bool
	Notify       []string
	// Timeout bounds the task on one host (default DefaultTaskTimeout).
	Timeout time.Duration
}

// DefaultTaskTimeout bounds a task without a timeout of its own.
const DefaultTaskTimeout = 30 * time.Minute

// ParseError is a problem in a playbook, located in its file.
type ParseError struct {
	File string
	Line int    // 0 when unknown
	Task string // the task's name, "" outside a task
	Msg  string
}

func (e *ParseError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
	}
	if e.Task != "" {
		return fmt.Sprintf("%s: task %q: %s", loc, e.Task, e.Msg)
	}
	return fmt.Sprintf("%s: %s", loc, e.Msg)
}

// The keys of a play and of a task besides its module.
var (
	playKeys = []string{"name", "description", "hosts", "serial", "any_errors_fatal", "become", "gather_facts", "vars", "secret_vars", "tasks", "handlers"}
	taskKeys = []string{"name", "when", "changed_when", "become", "register", "ignore_errors", "no_log", "notify", "timeout"}
)

// Parse reads a playbook held in memory. file names it in errors; fsys
// resolves its local files (nil: the working directory). Every problem found
// is reported (errors.Join of *ParseError), not only the first.
func Parse(file string, data []byte, fsys fs.FS) (*Playbook, error) {
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		return nil, &ParseError{File: file, Line: yamlErrLine(err), Msg: err.Error()}
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		line := 0
		if len(doc.Content) > 0 {
			line = doc.Content[0].Line
		}
		return nil, &ParseError{File: file, Line: line, Msg: "a playbook is a mapping with name, hosts and tasks"}
	}
	p := &parser{file: file}
	pb := p.play(doc.Content[0])
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	pb.File = file
	pb.FS = fsys
	return pb, nil
}

type parser struct {
	file string
	errs []error
}

func (p *parser) fail(line int, task, format string, args ...any) {
	p.errs = append(p.errs, &ParseError{File: p.file, Line: line, Task: task, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) play(root *yaml.Node) *Playbook {
	pb := &Playbook{GatherFacts: true, Vars: map[string]any{}}
	hostsSeen := false
	var tasksNode, handlersNode *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch k.Value {
		case "name":
			pb.Name = p.str(k.Value, v, "")
		case "description":
			pb.Description = p.str(k.Value, v, "")
		case "hosts":
			hostsSeen = true
			pb.Hosts = p.strList(k.Value, v, "")
			if len(pb.Hosts) == 0 {
				p.fail(v.Line, "", "hosts: empty (all, control-plane, worker, loadbalancer or node names)")
			}
		case "serial":
			if err := v.Decode(&pb.Serial); err != nil || pb.Serial < 0 {
				p.fail(v.Line, "", "serial: %q is not a batch size (0 = all hosts at once)", v.Value)
			}
		case "any_errors_fatal":
			pb.AnyErrorsFatal = p.boolean(k.Value, v, "")
		case "become":
			pb.Become = p.boolean(k.Value, v, "")
		case "gather_facts":
			pb.GatherFacts = p.boolean(k.Value, v, "")
		case "vars":
			if v.Kind != yaml.MappingNode {
				p.fail(v.Line, "", "vars: must be a mapping")
				continue
			}
			if err := v.Decode(&pb.Vars); err != nil {
				p.fail(v.Line, "", "vars: %v", err)
			}
		case "secret_vars":
			pb.SecretVars = p.strList(k.Value, v, "")
		case "tasks":
			tasksNode = v
		case "handlers":
			handlersNode = v
		default:
			p.fail(k.Line, "", "unknown key %q (known: %s)", k.Value, strings.Join(playKeys, ", "))
		}
	}
	if pb.Name == "" {
		p.fail(root.Line, "", "name: missing")
	}
	if !hostsSeen {
		p.fail(root.Line, "", "hosts: missing (all, control-plane, worker, loadbalancer or node names)")
	}
	if tasksNode == nil {
		p.fail(root.Line, "", "tasks: missing")
	} else {
		pb.Tasks = p.tasks("tasks", tasksNode)
	}
	if handlersNode != nil {
		pb.Handlers = p.tasks("handlers", handlersNode)
		seen := map[string]bool{}
		for _, h := range pb.Handlers {
			if seen[h.Name] {
				p.fail(h.Line, h.Name, "a handler of that name is already defined")
			}
			seen[h.Name] = true
		}
	}
	handlers := map[string]bool{}
	for _, h := range pb.Handlers {
		handlers[h.Name] = true
	}
	for _, t := range append(slices.Clone(pb.Tasks), pb.Handlers...) {
		for _, n := range t.Notify {
			if !handlers[n] {
				p.fail(t.Line, t.Name, "notify: no handler is named %q", n)
			}
		}
	}
	return pb
}

func (p *parser) tasks(what string, n *yaml.Node) []*Task {
	if n.Kind != yaml.SequenceNode {
		p.fail(n.Line, "", "%s: must be a list of tasks", what)
		return nil
	}
	var out []*Task
	for i, tn := range n.Content {
		if t := p.task(what, i, tn); t != nil {
			out = append(out, t)
		}
	}
	return out
}

func (p *parser) task(what string, idx int, n *yaml.Node) *Task {
	if n.Kind != yaml.MappingNode {
		p.fail(n.Line, "", "%s[%d]: a task is a mapping with a name and one module", what, idx)
		return nil
	}
	t := &Task{Line: n.Line}
	// The name first, so that every other error can carry it.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "name" {
			t.Name = p.str("name", n.Content[i+1], "")
		}
	}
	label := t.Name
	if label == "" {
		label = fmt.Sprintf("%s[%d]", what, idx)
		p.fail(n.Line, label, "name: missing")
	}
	var modKeys []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "name":
		case "when":
			t.When = p.condition(k.Value, v, label)
		case "changed_when":
			t.ChangedWhen = p.condition(k.Value, v, label)
		case "become":
			b := p.boolean(k.Value, v, label)
			t.Become = &b
		case "register":
			t.Register = p.str(k.Value, v, label)
			if t.Register != "" && !identifier(t.Register) {
				p.fail(v.Line, label, "register: %q is not a name (letters, digits and _)", t.Register)
			}
		case "ignore_errors":
			t.IgnoreErrors = p.boolean(k.Value, v, label)
		case "no_log":
			t.NoLog = p.boolean(k.Value, v, label)
		case "notify":
			t.Notify = p.strList(k.Value, v, label)
		case "timeout":
			d, err := time.ParseDuration(p.str(k.Value, v, label))
			if err != nil || d <= 0 {
				p.fail(v.Line, label, "timeout: %q is not a duration such as 10m", v.Value)
			}
			t.Timeout = d
		default:
			if _, ok := modules[k.Value]; ok {
				modKeys = append(modKeys, k)
				t.Module = k.Value
				t.args = p.moduleArgs(k.Value, v, label)
				continue
			}
			p.fail(k.Line, label, "unknown key %q (modules: %s; task keys: %s)", k.Value, strings.Join(moduleNames(), ", "), strings.Join(taskKeys, ", "))
		}
	}
	switch len(modKeys) {
	case 0:
		p.fail(n.Line, label, "no module (one of: %s)", strings.Join(moduleNames(), ", "))
	case 1:
	default:
		p.fail(modKeys[1].Line, label, "more than one module (%s and %s); a task runs exactly one", modKeys[0].Value, modKeys[1].Value)
	}
	return t
}

// moduleArgs decodes a module's arguments strictly: every key must be a
// field of the module, with a value of the right type.
func (p *parser) moduleArgs(name string, v *yaml.Node, task string) module {
	m := modules[name].new()
	if v.Kind == yaml.ScalarNode && v.Tag != "!!null" {
		// The short form of shell and command: the command line itself.
		if s, ok := m.(interface{ setFree(string) }); ok {
			s.setFree(v.Value)
			return p.validate(name, m, v, task)
		}
	}
	if v.Kind != yaml.MappingNode {
		p.fail(v.Line, task, "%s: arguments must be a mapping", name)
		return nil
	}
	fields := yamlFields(reflect.TypeOf(m).Elem())
	ok := true
	for i := 0; i+1 < len(v.Content); i += 2 {
		k := v.Content[i]
		if !slices.Contains(fields, k.Value) {
			p.fail(k.Line, task, "%s: unknown argument %q (known: %s)", name, k.Value, strings.Join(fields, ", "))
			ok = false
		}
	}
	if !ok {
		return nil
	}
	if err := v.Decode(m); err != nil {
		p.fail(yamlErrLineOr(err, v.Line), task, "%s: %s", name, cleanYAMLErr(err))
		return nil
	}
	if s, ok := m.(interface{ sawKeys([]string) }); ok {
		var keys []string
		for i := 0; i+1 < len(v.Content); i += 2 {
			keys = append(keys, v.Content[i].Value)
		}
		s.sawKeys(keys)
	}
	return p.validate(name, m, v, task)
}

func (p *parser) validate(name string, m module, v *yaml.Node, task string) module {
	if err := m.validate(asParsed); err != nil {
		p.fail(v.Line, task, "%s: %v", name, err)
		return nil
	}
	return m
}

// yamlFields lists the yaml keys of a struct type.
func yamlFields(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		name, opts, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		switch {
		case opts == "inline":
			out = append(out, yamlFields(t.Field(i).Type)...)
		case name != "" && name != "-":
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func (p *parser) str(key string, v *yaml.Node, task string) string {
	if v.Kind != yaml.ScalarNode {
		p.fail(v.Line, task, "%s: must be a string", key)
		return ""
	}
	return v.Value
}

func (p *parser) boolean(key string, v *yaml.Node, task string) bool {
	var b bool
	if v.Kind != yaml.ScalarNode || v.Decode(&b) != nil {
		p.fail(v.Line, task, "%s: %q is not true or false", key, v.Value)
	}
	return b
}

// condition accepts a template ('{{ eq .facts.os "debian" }}'), a bare
// expression ('eq .facts.os "debian"', wrapped in {{ }}) or a boolean.
func (p *parser) condition(key string, v *yaml.Node, task string) string {
	s := p.str(key, v, task)
	if s == "" {
		return ""
	}
	if !strings.Contains(s, "{{") {
		s = "{{ " + s + " }}"
	}
	if _, err := newTemplate(key).Parse(s); err != nil {
		p.fail(v.Line, task, "%s: %v", key, err)
	}
	return s
}

// strList accepts a string (comma separated) or a list of strings.
func (p *parser) strList(key string, v *yaml.Node, task string) []string {
	var out []string
	switch v.Kind {
	case yaml.ScalarNode:
		for _, s := range strings.Split(v.Value, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	case yaml.SequenceNode:
		for _, item := range v.Content {
			if item.Kind != yaml.ScalarNode {
				p.fail(item.Line, task, "%s: items must be strings", key)
				continue
			}
			out = append(out, item.Value)
		}
	default:
		p.fail(v.Line, task, "%s: must be a string or a list of strings", key)
	}
	return out
}

func identifier(s string) bool {
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}

// yamlErrLine extracts "line N" from a yaml error.
func yamlErrLine(err error) int { return yamlErrLineOr(err, 0) }

func yamlErrLineOr(err error, def int) int {
	s := err.Error()
	if i := strings.Index(s, "line "); i >= 0 {
		rest := s[i+5:]
		j := 0
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		if n, err := strconv.Atoi(rest[:j]); err == nil {
			return n
		}
	}
	return def
}

// cleanYAMLErr drops the "yaml: unmarshal errors:\n  line N: " noise.
func cleanYAMLErr(err error) string {
	s := strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n")
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "line ") {
		if _, rest, ok := strings.Cut(s, ": "); ok {
			s = rest
		}
	}
	return strings.ReplaceAll(s, "!!", "")
}
