package playbooks

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/kbootstrap/kbootstrap/node"
)

// inlineLimit is the largest content sent along with the comparison, in the
// same round-trip; larger files are compared first and sent only when they
// differ.
const inlineLimit = 256 << 10

// putFile makes path hold content with attributes a: one remote command
// compares the sha256 and attributes and, when they differ, writes a
// temporary file next to path and renames it over (atomic). The content is
// never sent in check mode, nor (for large files) when it is already there.
// mkParents creates missing parent directories.
func putFile(ctx context.Context, e *env, path string, content []byte, a attrs, mkParents bool) ([]string, error) {
	sum := sha256.Sum256(content)
	want := hex.EncodeToString(sum[:])
	if e.check || len(content) > inlineLimit {
		changes, res, err := e.script(ctx, putScript(path, want, a, e.check, false, mkParents))
		if err != nil || e.check || !bytes.Contains(res.Stdout, []byte("kb:need-content")) {
			return changes, err
		}
	}
	changes, _, err := e.script(ctx, putScript(path, want, a, false, true, mkParents), node.Stdin(bytes.NewReader(content)))
	return changes, err
}

func putScript(path, sum string, a attrs, check, withContent, mkParents bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "p=%s want=%s\n", node.ShellQuote(path), sum)
	b.WriteString(checkFlag(check))
	b.WriteString(a.shellVars())
	if withContent {
		b.WriteString("have_content=1\n")
	} else {
		b.WriteString("have_content=0\n")
	}
	if mkParents {
		b.WriteString("mkparents=1\n")
	} else {
		b.WriteString("mkparents=0\n")
	}
	b.WriteString(attrsFunc)
	b.WriteString(`drain() { if [ "$have_content" = 1 ]; then cat >/dev/null; fi; }
if [ -d "$p" ] && [ ! -L "$p" ]; then drain; echo "$p is a directory" >&2; exit 3; fi
cur=
if [ -f "$p" ]; then cur=$(sha256sum < "$p" | cut -c1-64); fi
if [ "$cur" != "$want" ]; then
  if [ -e "$p" ]; then echo "kb:changed content"; else echo "kb:changed created"; fi
  if [ "$check" = 1 ]; then drain; exit 0; fi
  if [ "$have_content" = 0 ]; then echo "kb:need-content"; exit 0; fi
  d=$(dirname -- "$p")
  if [ ! -d "$d" ]; then
    if [ "$mkparents" = 1 ]; then mkdir -p -- "$d" || exit 3
    else drain; echo "directory $d does not exist" >&2; exit 3; fi
  fi
  t=$(mktemp "$d/.kbtmp-XXXXXX") || { drain; exit 3; }
  trap 'rm -f "$t"' EXIT
  cat > "$t" || exit 3
  [ "$(sha256sum < "$t" | cut -c1-64)" = "$want" ] || { echo "short write to $p" >&2; exit 3; }
  if [ -e "$p" ]; then chmod --reference="$p" -- "$t" && chown --reference="$p" -- "$t" || exit 3
  else chmod 644 -- "$t" || exit 3; fi
  kb_attrs "$t" >/dev/null
  sync -- "$t" 2>/dev/null || sync
  mv -f -- "$t" "$p" || exit 3
  trap - EXIT
  exit 0
fi
drain
kb_attrs "$p"
`)
	return b.String()
}

// copyModule writes inline content or a local file.
type copyModule struct {
	Dest    string `yaml:"dest"`
	Content string `yaml:"content"`
	Src     string `yaml:"src"`
	attrs   `yaml:",inline"`

	hasContent bool // content: was given (maybe empty)
}

func (m *copyModule) sawKeys(keys []string) { m.hasContent = slices.Contains(keys, "content") }

func (m *copyModule) validate(v validation) error {
	switch {
	case m.Dest == "":
		return errors.New("dest: missing")
	case m.hasContent == (m.Src != ""):
		return errors.New("give exactly one of content and src")
	}
	return m.attrs.validate(v)
}

func (m *copyModule) run(ctx context.Context, e *env) (Result, error) {
	content := []byte(m.Content)
	if m.Src != "" {
		b, err := e.readLocal(m.Src)
		if err != nil {
			return Result{}, fmt.Errorf("src: %w", err)
		}
		content = b
	}
	changes, err := putFile(ctx, e, m.Dest, content, m.attrs, false)
	if err != nil {
		return Result{}, err
	}
	return changed(changes, m.Dest), nil
}

// templateModule renders a local text/template file to dest.
type templateModule struct {
	Src   string `yaml:"src"`
	Dest  string `yaml:"dest"`
	attrs `yaml:",inline"`
}

func (m *templateModule) validate(v validation) error {
	switch {
	case m.Src == "":
		return errors.New("src: missing")
	case m.Dest == "":
		return errors.New("dest: missing")
	}
	return m.attrs.validate(v)
}

func (m *templateModule) run(ctx context.Context, e *env) (Result, error) {
	b, err := e.readLocal(m.Src)
	if err != nil {
		return Result{}, fmt.Errorf("src: %w", err)
	}
	t, err := newTemplate(m.Src).Parse(string(b))
	if err != nil {
		return Result{}, fmt.Errorf("src: %w", err)
	}
	var out bytes.Buffer
	if err := t.Execute(&out, e.data); err != nil {
		return Result{}, fmt.Errorf("src: %w", err)
	}
	changes, err := putFile(ctx, e, m.Dest, out.Bytes(), m.attrs, false)
	if err != nil {
		return Result{}, err
	}
	return changed(changes, m.Dest), nil
}

// fileModule manages a path's existence, type and attributes.
type fileModule struct {
	Path  string `yaml:"path"`
	State string `yaml:"state"` // file (default), directory, absent, link, touch
	Src   string `yaml:"src"`   // target of a link
	attrs `yaml:",inline"`
}

func (m *fileModule) validate(v validation) error {
	if m.Path == "" {
		return errors.New("path: missing")
	}
	switch m.State {
	case "", "file", "directory", "absent", "touch":
	case "link":
		if m.Src == "" {
			return errors.New("src: missing (the target of the link)")
		}
	default:
		if !v.templated(m.State) {
			return fmt.Errorf("state %q: want file, directory, absent, link or touch", m.State)
		}
	}
	return m.attrs.validate(v)
}

func (m *fileModule) run(ctx context.Context, e *env) (Result, error) {
	state := m.State
	if state == "" {
		state = "file"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "p=%s src=%s state=%s\n", node.ShellQuote(m.Path), node.ShellQuote(m.Src), node.ShellQuote(state))
	b.WriteString(checkFlag(e.check))
	b.WriteString(m.attrs.shellVars())
	b.WriteString(attrsFunc)
	b.WriteString(`case $state in
directory)
  if [ -d "$p" ]; then :
  elif [ -e "$p" ] || [ -L "$p" ]; then echo "$p exists and is not a directory" >&2; exit 3
  else echo "kb:changed created"; [ "$check" = 1 ] && exit 0; mkdir -p -- "$p" || exit 3; fi
  kb_attrs "$p" ;;
absent)
  if [ -e "$p" ] || [ -L "$p" ]; then echo "kb:changed removed"; [ "$check" = 1 ] || rm -rf -- "$p" || exit 3; fi ;;
link)
  if [ -L "$p" ] && [ "$(readlink -- "$p")" = "$src" ]; then :
  elif [ -d "$p" ] && [ ! -L "$p" ]; then echo "$p is a directory" >&2; exit 3
  else echo "kb:changed link -> $src"; [ "$check" = 1 ] && exit 0; ln -sfn -- "$src" "$p" || exit 3; fi
  kb_attrs "$p" ;;
touch)
  if [ ! -e "$p" ]; then echo "kb:changed created"; [ "$check" = 1 ] && exit 0; : > "$p" || exit 3; fi
  kb_attrs "$p" ;;
file)
  [ -e "$p" ] || { echo "$p does not exist (state: touch creates it)" >&2; exit 3; }
  kb_attrs "$p" ;;
esac
`)
	changes, _, err := e.script(ctx, b.String())
	if err != nil {
		return Result{}, err
	}
	return changed(changes, m.Path), nil
}

// lineinfileModule ensures a line is in (or absent from) a file.
type lineinfileModule struct {
	Path         string `yaml:"path"`
	Line         string `yaml:"line"`
	Regexp       string `yaml:"regexp"` // Go (RE2) syntax
	State        string `yaml:"state"`  // present (default) or absent
	Create       bool   `yaml:"create"`
	InsertAfter  string `yaml:"insertafter"`  // a regexp or EOF (default)
	InsertBefore string `yaml:"insertbefore"` // a regexp or BOF
	attrs        `yaml:",inline"`
}

func (m *lineinfileModule) validate(v validation) error {
	if m.Path == "" {
		return errors.New("path: missing")
	}
	switch m.State {
	case "", "present":
		if m.Line == "" {
			return errors.New("line: missing")
		}
	case "absent":
		if m.Line == "" && m.Regexp == "" {
			return errors.New("give line or regexp for state: absent")
		}
	default:
		if !v.templated(m.State) {
			return fmt.Errorf("state %q: want present or absent", m.State)
		}
	}
	if m.InsertAfter != "" && m.InsertBefore != "" {
		return errors.New("give insertafter or insertbefore, not both")
	}
	for _, re := range []string{m.Regexp, m.InsertAfter, m.InsertBefore} {
		if re != "" && re != "EOF" && re != "BOF" && !v.templated(re) {
			if _, err := regexp.Compile(re); err != nil {
				return err
			}
		}
	}
	return m.attrs.validate(v)
}

func (m *lineinfileModule) run(ctx context.Context, e *env) (Result, error) {
	exists, content, err := readRemote(ctx, e, m.Path)
	if err != nil {
		return Result{}, err
	}
	if !exists && (m.State == "absent" || !m.Create) {
		if m.State == "absent" {
			return Result{Status: StatusOK, Msg: m.Path + " does not exist"}, nil
		}
		return Result{}, fmt.Errorf("%s does not exist (create: true creates it)", m.Path)
	}
	next, err := editLines(content, m)
	if err != nil {
		return Result{}, err
	}
	if exists && next == content && m.attrs == (attrs{}) {
		return Result{Status: StatusOK, Msg: m.Path}, nil
	}
	changes, err := putFile(ctx, e, m.Path, []byte(next), m.attrs, false)
	if err != nil {
		return Result{}, err
	}
	return changed(changes, m.Path), nil
}

// readRemote reads a file in one command; a missing file is no error.
func readRemote(ctx context.Context, e *env, path string) (bool, string, error) {
	res, err := e.run(ctx, "if [ -f "+node.ShellQuote(path)+" ]; then echo present; cat -- "+node.ShellQuote(path)+"; else echo missing; fi", node.HideOutput())
	if err != nil {
		return false, "", scriptError(res, err)
	}
	head, rest, _ := strings.Cut(string(res.Stdout), "\n")
	return head == "present", rest, nil
}

// editLines applies a lineinfile edit to content.
func editLines(content string, m *lineinfileModule) (string, error) {
	var lines []string
	if content != "" {
		lines = strings.Split(strings.TrimSuffix(content, "\n"), "\n")
	}
	var re *regexp.Regexp
	if m.Regexp != "" {
		var err error
		if re, err = regexp.Compile(m.Regexp); err != nil {
			return "", err
		}
	}
	matches := func(l string) bool {
		if re != nil {
			return re.MatchString(l)
		}
		return l == m.Line
	}
	if m.State == "absent" {
		n := len(lines)
		if lines = slices.DeleteFunc(lines, matches); len(lines) == n {
			return content, nil
		}
		return joinLines(lines), nil
	}
	last := -1
	for i, l := range lines {
		if matches(l) {
			last = i
		}
	}
	switch {
	case last >= 0 && lines[last] == m.Line:
		return content, nil
	case last >= 0:
		lines[last] = m.Line
	case slices.Contains(lines, m.Line):
		return content, nil
	default:
		at, err := insertAt(lines, m)
		if err != nil {
			return "", err
		}
		lines = slices.Insert(lines, at, m.Line)
	}
	return joinLines(lines), nil
}

func insertAt(lines []string, m *lineinfileModule) (int, error) {
	switch {
	case m.InsertBefore == "BOF":
		return 0, nil
	case m.InsertBefore != "":
		re, err := regexp.Compile(m.InsertBefore)
		if err != nil {
			return 0, err
		}
		for i, l := range lines {
			if re.MatchString(l) {
				return i, nil
			}
		}
	case m.InsertAfter != "" && m.InsertAfter != "EOF":
		re, err := regexp.Compile(m.InsertAfter)
		if err != nil {
			return 0, err
		}
		for i := len(lines) - 1; i >= 0; i-- {
			if re.MatchString(lines[i]) {
				return i + 1, nil
			}
		}
	}
	return len(lines), nil
}

func joinLines(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}
