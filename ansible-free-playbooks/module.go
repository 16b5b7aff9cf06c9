package playbooks

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"

	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/node"
)

// module is a module's arguments and what it does with them. validate runs
// at parse time (on arguments that may still hold templates) and again
// after rendering; run must be idempotent and honour env.check.
type module interface {
	validate(v validation) error
	run(ctx context.Context, e *env) (Result, error)
}

type moduleInfo struct {
	new func() module
}

// modules is the registry of module keys.
var modules = map[string]moduleInfo{
	"shell":        {func() module { return &shellModule{} }},
	"command":      {func() module { return &commandModule{} }},
	"copy":         {func() module { return &copyModule{} }},
	"template":     {func() module { return &templateModule{} }},
	"file":         {func() module { return &fileModule{} }},
	"lineinfile":   {func() module { return &lineinfileModule{} }},
	"sysctl":       {func() module { return &sysctlModule{} }},
	"modprobe":     {func() module { return &modprobeModule{} }},
	"apt":          {func() module { return &aptModule{} }},
	"service":      {func() module { return &serviceModule{} }},
	"wait_for":     {func() module { return &waitForModule{} }},
	"fetch":        {func() module { return &fetchModule{} }},
	"upload":       {func() module { return &uploadModule{} }},
	"image_import": {func() module { return &imageImportModule{} }},
	"debug":        {func() module { return &debugModule{} }},
}

// Modules lists the module names.
func Modules() []string { return moduleNames() }

func moduleNames() []string {
	out := make([]string, 0, len(modules))
	for k := range modules {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// cloneModule returns a copy of m whose slices and maps can be rendered
// without touching m.
func cloneModule(m module) module {
	v := reflect.New(reflect.TypeOf(m).Elem())
	v.Elem().Set(reflect.ValueOf(m).Elem())
	return v.Interface().(module)
}

// strList is a list of strings that may be written as a single string.
type strList []string

func (l *strList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*l = strList{n.Value}
		return nil
	}
	var s []string
	if err := n.Decode(&s); err != nil {
		return err
	}
	*l = s
	return nil
}

// env is what a module runs with on one host.
type env struct {
	n       node.Node // through sudo when the task has become
	host    inventory.Node
	check   bool
	fs      fs.FS // the playbook's directory
	data    map[string]any
	noLog   bool
	secrets []string
	local   *localFiles // shared by the hosts of a run
}

// run runs a command with the task's redaction.
func (e *env) run(ctx context.Context, cmd string, opts ...node.ExecOption) (node.Result, error) {
	opts = append(opts, node.Redact(e.secrets...))
	if e.noLog {
		opts = append(opts, node.Sensitive(), node.HideOutput())
	}
	return e.n.Run(ctx, cmd, opts...)
}

// script runs one of the modules' own shell scripts, which report what they
// changed as "kb:changed WHAT" lines on stdout, and returns those.
func (e *env) script(ctx context.Context, cmd string, opts ...node.ExecOption) ([]string, node.Result, error) {
	res, err := e.run(ctx, cmd, opts...)
	if err != nil {
		return nil, res, scriptError(res, err)
	}
	var changes []string
	for _, line := range strings.Split(string(res.Stdout), "\n") {
		if what, ok := strings.CutPrefix(line, "kb:changed"); ok {
			changes = append(changes, strings.TrimSpace(what))
		}
	}
	return changes, res, nil
}

// scriptError prefers the script's own message (its stderr) over the
// generic "command exited" text, which would repeat the whole script.
func scriptError(res node.Result, err error) error {
	var ee *node.ExitError
	if errors.As(err, &ee) {
		msg := strings.TrimSpace(string(res.Stderr))
		if msg == "" {
			msg = strings.TrimSpace(ee.Stderr)
		}
		if msg == "" {
			msg = fmt.Sprintf("exit status %d", ee.ExitCode)
		}
		return &scriptFailure{msg: msg, err: err}
	}
	return err
}

type scriptFailure struct {
	msg string
	err error
}

func (e *scriptFailure) Error() string { return e.msg }
func (e *scriptFailure) Unwrap() error { return e.err }

// changed turns a list of changes into a result.
func changed(changes []string, okMsg string) Result {
	if len(changes) == 0 {
		return Result{Status: StatusOK, Msg: okMsg}
	}
	return Result{Status: StatusChanged, Msg: strings.Join(changes, ", ")}
}

// readLocal reads a local file named by a module: absolute, or relative to
// the playbook's directory.
func (e *env) readLocal(p string) ([]byte, error) {
	if filepath.IsAbs(p) || e.fs == nil {
		return os.ReadFile(p)
	}
	return fs.ReadFile(e.fs, filepath.ToSlash(filepath.Clean(p)))
}

// attrs are the mode and owner a module wants on a path.
type attrs struct {
	Mode  string `yaml:"mode"`
	Owner string `yaml:"owner"`
	Group string `yaml:"group"`
}

func (a attrs) validate(v validation) error {
	if a.Mode != "" && !v.templated(a.Mode) {
		if _, err := parseMode(a.Mode); err != nil {
			return err
		}
	}
	return nil
}

// parseMode accepts an octal mode ("0640", "640", "0o640", "1777").
func parseMode(s string) (fs.FileMode, error) {
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "0o"), 8, 32)
	if err != nil || v > 0o7777 {
		return 0, fmt.Errorf("mode %q: want an octal mode such as \"0644\"", s)
	}
	return fs.FileMode(v), nil
}

// shellVars returns the assignments used by attrsFunc: the wanted mode in
// stat's %a form, and owner and group.
func (a attrs) shellVars() string {
	mode := ""
	if a.Mode != "" {
		m, _ := parseMode(a.Mode)
		mode = strconv.FormatUint(uint64(m), 8)
	}
	return fmt.Sprintf("want_mode=%s want_owner=%s want_group=%s\n", node.ShellQuote(mode), node.ShellQuote(a.Owner), node.ShellQuote(a.Group))
}

// attrsFunc is a shell function kb_attrs PATH that reports and (unless
// check=1) fixes the mode, owner and group of PATH.
const attrsFunc = `kb_attrs() {
  if [ -n "$want_owner" ]; then
    case "$want_owner" in *[!0-9]*) u=$(id -u -- "$want_owner" 2>/dev/null) || { echo "no user $want_owner" >&2; exit 3; } ;; *) u=$want_owner ;; esac
    [ "$(stat -c %u -- "$1")" = "$u" ] || { echo "kb:changed owner $want_owner"; [ "$check" = 1 ] || chown -h -- "$u" "$1" || exit 3; }
  fi
  if [ -n "$want_group" ]; then
    case "$want_group" in *[!0-9]*) g=$(getent group "$want_group" | cut -d: -f3); [ -n "$g" ] || { echo "no group $want_group" >&2; exit 3; } ;; *) g=$want_group ;; esac
    [ "$(stat -c %g -- "$1")" = "$g" ] || { echo "kb:changed group $want_group"; [ "$check" = 1 ] || chgrp -h -- "$g" "$1" || exit 3; }
  fi
  if [ -n "$want_mode" ] && [ ! -L "$1" ]; then
    cur=$(stat -c %a -- "$1")
    [ "$cur" = "$want_mode" ] || { echo "kb:changed mode $cur -> $want_mode"; [ "$check" = 1 ] || chmod -- "$want_mode" "$1" || exit 3; }
  fi
}
`

func checkFlag(check bool) string {
	if check {
		return "check=1\n"
	}
	return "check=0\n"
}
