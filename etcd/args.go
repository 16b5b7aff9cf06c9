package etcd

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// Args is a parsed command line of a Go program (kube-apiserver uses pflag,
// etcd the standard flag package): the values of each flag in the order they
// appeared, and the positional arguments.
type Args struct {
	// Program is argv[0] when the command line started with one.
	Program    string
	Values     map[string][]string
	Order      []string // flag names in first-seen order
	Positional []string
}

// ParseArgs parses argv. Flags may be written --name=value, --name value,
// -name=value or -name value; a flag named in boolFlags never consumes the
// next argument (--client-cert-auth alone means true, as with Go's flag
// package). When argv[0] does not start with "-" it is taken as the program.
func ParseArgs(argv []string, boolFlags map[string]bool) Args {
	a := Args{Values: map[string][]string{}}
	if len(argv) > 0 && !strings.HasPrefix(argv[0], "-") {
		a.Program, argv = argv[0], argv[1:]
	}
	for i := 0; i < len(argv); i++ {
		arg := argv[i]
		if arg == "--" {
			a.Positional = append(a.Positional, argv[i+1:]...)
			break
		}
		if len(arg) < 2 || arg[0] != '-' {
			a.Positional = append(a.Positional, arg)
			continue
		}
		name := strings.TrimPrefix(strings.TrimPrefix(arg, "-"), "-")
		if name == "" {
			a.Positional = append(a.Positional, arg)
			continue
		}
		value, hasValue := "", false
		if k, v, ok := strings.Cut(name, "="); ok {
			name, value, hasValue = k, v, true
		}
		if !hasValue && !boolFlags[name] && i+1 < len(argv) && !looksLikeFlag(argv[i+1]) {
			value, hasValue = argv[i+1], true
			i++
		}
		if !hasValue {
			value = "true"
		}
		if _, seen := a.Values[name]; !seen {
			a.Order = append(a.Order, name)
		}
		a.Values[name] = append(a.Values[name], value)
	}
	return a
}

// looksLikeFlag reports whether s is a flag rather than a value ("-1" and "-"
// are values).
func looksLikeFlag(s string) bool {
	if len(s) < 2 || s[0] != '-' {
		return false
	}
	if s == "--" {
		return true
	}
	c := s[1]
	if c == '-' && len(s) > 2 {
		c = s[2]
	}
	return c != '-' && (c < '0' || c > '9') && c != '.'
}

// Get returns the last value of flag name (the one that wins for both pflag
// and Go's flag package).
func (a Args) Get(name string) (string, bool) {
	v := a.Values[name]
	if len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

// String returns the last value of name, or "".
func (a Args) String(name string) string {
	v, _ := a.Get(name)
	return v
}

// Bool returns the flag as a boolean: absent is def, a bare flag is true, an
// unparsable value is reported with ok false.
func (a Args) Bool(name string, def bool) (value, ok bool) {
	v, set := a.Get(name)
	if !set {
		return def, true
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return def, false
	}
	return b, true
}

// Has reports whether the flag was given.
func (a Args) Has(name string) bool { return len(a.Values[name]) > 0 }

// List splits the last value of name on commas, dropping empty items.
func (a Args) List(name string) []string {
	return splitList(a.String(name))
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// SplitCmdline splits the content of /proc/PID/cmdline (NUL-terminated
// arguments) into argv.
func SplitCmdline(b []byte) []string {
	b = bytes.TrimRight(b, "\x00")
	if len(b) == 0 {
		return nil
	}
	parts := bytes.Split(b, []byte{0})
	argv := make([]string, len(parts))
	for i, p := range parts {
		argv[i] = string(p)
	}
	return argv
}

// SplitEnviron splits /proc/PID/environ into a map.
func SplitEnviron(b []byte) map[string]string {
	env := map[string]string{}
	for _, kv := range SplitCmdline(b) {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return env
}

// manifestPod is the part of a static pod manifest kbootstrap reads.
type manifestPod struct {
	Kind string `json:"kind"`
	Spec struct {
		Containers []manifestContainer `json:"containers"`
	} `json:"spec"`
}

type manifestContainer struct {
	Name    string   `json:"name"`
	Command []string `json:"command"`
	Args    []string `json:"args"`
	Env     []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	} `json:"env"`
}

// ManifestCommand returns the command line (command followed by args) and
// the literal environment of the container called container in a static pod
// manifest; with a single container its name does not matter.
func ManifestCommand(manifest []byte, container string) (argv []string, env map[string]string, err error) {
	var p manifestPod
	if err := yaml.Unmarshal(manifest, &p); err != nil {
		return nil, nil, fmt.Errorf("parse pod manifest: %w", err)
	}
	if p.Kind != "" && p.Kind != "Pod" {
		return nil, nil, fmt.Errorf("parse pod manifest: kind %q, want Pod", p.Kind)
	}
	var c *manifestContainer
	for i := range p.Spec.Containers {
		if p.Spec.Containers[i].Name == container {
			c = &p.Spec.Containers[i]
			break
		}
	}
	if c == nil && len(p.Spec.Containers) == 1 {
		c = &p.Spec.Containers[0]
	}
	if c == nil {
		return nil, nil, fmt.Errorf("pod manifest has no container %q", container)
	}
	argv = append(append([]string{}, c.Command...), c.Args...)
	if len(argv) == 0 {
		return nil, nil, fmt.Errorf("container %q of the pod manifest has neither command nor args", container)
	}
	env = map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	return argv, env, nil
}
