package playbooks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/kbootstrap/kbootstrap/node"
)

// execArgs are the arguments shell and command share.
type execArgs struct {
	Cmd     string `yaml:"cmd"`
	Creates string `yaml:"creates"` // skip when this path exists
	Removes string `yaml:"removes"` // skip when this path does not exist
	Unless  string `yaml:"unless"`  // skip when this shell command succeeds
	Chdir   string `yaml:"chdir"`
	Stdin   string `yaml:"stdin"`
	// Environment is exported for the command (not for unless).
	Environment map[string]string `yaml:"environment"`
}

// shellModule runs a command line through /bin/sh. It changes unless a
// guard (creates, removes, unless) says it has nothing to do.
type shellModule struct {
	execArgs `yaml:",inline"`
}

func (m *shellModule) setFree(s string) { m.Cmd = s }

func (m *shellModule) validate(v validation) error {
	if strings.TrimSpace(m.Cmd) == "" {
		return errors.New("cmd: missing")
	}
	return m.execArgs.validate(v)
}

func (m *shellModule) run(ctx context.Context, e *env) (Result, error) {
	return m.execArgs.run(ctx, e, "exec /bin/sh -c "+node.ShellQuote(m.Cmd))
}

// commandModule runs a program without a shell: cmd is split into words
// (quotes are honoured; pipes, redirections and variables are not), or argv
// gives them one by one.
type commandModule struct {
	execArgs `yaml:",inline"`
	Argv     []string `yaml:"argv"`
}

func (m *commandModule) setFree(s string) { m.Cmd = s }

func (m *commandModule) validate(v validation) error {
	if (strings.TrimSpace(m.Cmd) == "") == (len(m.Argv) == 0) {
		return errors.New("give exactly one of cmd and argv")
	}
	if m.Cmd != "" && !v.templated(m.Cmd) {
		if _, err := splitWords(m.Cmd); err != nil {
			return fmt.Errorf("cmd: %w", err)
		}
	}
	return m.execArgs.validate(v)
}

func (m *commandModule) run(ctx context.Context, e *env) (Result, error) {
	argv := m.Argv
	if len(argv) == 0 {
		var err error
		if argv, err = splitWords(m.Cmd); err != nil {
			return Result{}, fmt.Errorf("cmd: %w", err)
		}
	}
	return m.execArgs.run(ctx, e, "exec "+node.JoinArgs(argv...))
}

func (a *execArgs) validate(v validation) error {
	for k := range a.Environment {
		if !identifier(k) {
			return fmt.Errorf("environment: %q is not a variable name", k)
		}
	}
	return nil
}

// run runs line (an exec of the command) behind the guards, in one remote
// command.
func (a *execArgs) run(ctx context.Context, e *env, line string) (Result, error) {
	guarded := a.Creates != "" || a.Removes != "" || a.Unless != ""
	if e.check && !guarded {
		return Result{Status: StatusChanged, Msg: "would run"}, nil
	}
	var nonce [8]byte
	rand.Read(nonce[:])
	mark := "kb:skip-" + hex.EncodeToString(nonce[:])
	var b strings.Builder
	if a.Creates != "" {
		fmt.Fprintf(&b, "if [ -e %s ]; then echo %s creates; exit 0; fi\n", node.ShellQuote(a.Creates), mark)
	}
	if a.Removes != "" {
		fmt.Fprintf(&b, "if [ ! -e %s ]; then echo %s removes; exit 0; fi\n", node.ShellQuote(a.Removes), mark)
	}
	if a.Unless != "" {
		fmt.Fprintf(&b, "if (%s) </dev/null >/dev/null 2>&1; then echo %s unless; exit 0; fi\n", a.Unless, mark)
	}
	if e.check {
		fmt.Fprintf(&b, "echo %s-run\n", mark)
	} else {
		if a.Chdir != "" {
			fmt.Fprintf(&b, "cd %s || exit\n", node.ShellQuote(a.Chdir))
		}
		keys := make([]string, 0, len(a.Environment))
		for k := range a.Environment {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "export %s=%s\n", k, node.ShellQuote(a.Environment[k]))
		}
		b.WriteString(line)
	}
	var opts []node.ExecOption
	if a.Stdin != "" && !e.check {
		opts = append(opts, node.StdinString(a.Stdin))
	}
	res, err := e.run(ctx, b.String(), opts...)
	out := Result{Stdout: string(res.Stdout), Stderr: string(res.Stderr), RC: res.ExitCode}
	if err != nil {
		var ee *node.ExitError
		if !errors.As(err, &ee) {
			return out, err
		}
		out.Status = StatusFailed
		out.Msg = fmt.Sprintf("exit status %d", res.ExitCode)
		if last := lastLine(out.Stderr); last != "" {
			out.Msg += ": " + last
		}
		return out, nil
	}
	if rest, ok := strings.CutPrefix(out.Stdout, mark); ok {
		why := strings.TrimSpace(rest)
		switch why {
		case "-run":
			return Result{Status: StatusChanged, Msg: "would run"}, nil
		case "creates":
			return Result{Status: StatusOK, Msg: a.Creates + " exists"}, nil
		case "removes":
			return Result{Status: StatusOK, Msg: a.Removes + " does not exist"}, nil
		default:
			return Result{Status: StatusOK, Msg: "unless succeeded"}, nil
		}
	}
	out.Status = StatusChanged
	out.Msg = lastLine(out.Stdout)
	return out, nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// splitWords splits a command line into words the way a shell would,
// honouring single and double quotes and backslashes, without expanding
// anything.
func splitWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated single quote")
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errors.New("unterminated double quote")
			}
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	if len(words) == 0 {
		return nil, errors.New("empty command")
	}
	return words, nil
}

// debugModule reports a message.
type debugModule struct {
	Msg string `yaml:"msg"`
}

func (m *debugModule) setFree(s string)            { m.Msg = s }
func (m *debugModule) validate(v validation) error { return nil }
func (m *debugModule) run(context.Context, *env) (Result, error) {
	return Result{Status: StatusOK, Msg: m.Msg}, nil
}
