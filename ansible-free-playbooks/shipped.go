package playbooks

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

//go:embed playbooks
var shipped embed.FS

// Info describes a shipped playbook.
type Info struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

// List returns the shipped playbooks, sorted by name.
func List() ([]Info, error) {
	entries, err := fs.ReadDir(shipped, "playbooks")
	if err != nil {
		return nil, err
	}
	var out []Info
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".yaml")
		if !ok || e.IsDir() {
			continue
		}
		pb, err := Shipped(name)
		if err != nil {
			return nil, err
		}
		out = append(out, Info{Name: name, Description: pb.Description})
	}
	slices.SortFunc(out, func(a, b Info) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// ErrUnknownPlaybook is returned by Load for a name that is neither a file
// nor a shipped playbook.
var ErrUnknownPlaybook = errors.New("no such playbook")

// Shipped parses the shipped playbook called name; its local files
// (template src, ...) are resolved in playbooks/NAME/.
func Shipped(name string) (*Playbook, error) {
	data, err := shipped.ReadFile("playbooks/" + name + ".yaml")
	if err != nil {
		return nil, fmt.Errorf("%q: %w", name, ErrUnknownPlaybook)
	}
	sub, err := fs.Sub(shipped, "playbooks/"+name)
	if err != nil {
		return nil, err
	}
	return Parse(name+".yaml", data, sub)
}

// Load parses a playbook file, or the shipped playbook of that name when
// arg names no file (and has no path separator or .yaml suffix).
func Load(arg string) (*Playbook, error) {
	looksLikeFile := strings.ContainsRune(arg, filepath.Separator) || strings.HasSuffix(arg, ".yaml") || strings.HasSuffix(arg, ".yml")
	data, err := os.ReadFile(arg)
	switch {
	case err == nil:
		return Parse(arg, data, os.DirFS(filepath.Dir(arg)))
	case looksLikeFile || !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("playbook: %w", err)
	}
	pb, err := Shipped(arg)
	if errors.Is(err, ErrUnknownPlaybook) {
		names := []string{}
		if list, lerr := List(); lerr == nil {
			for _, i := range list {
				names = append(names, i.Name)
			}
		}
		return nil, fmt.Errorf("playbook %q: neither a file nor a shipped playbook (%s)", arg, strings.Join(names, ", "))
	}
	return pb, err
}
