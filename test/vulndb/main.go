// Command vulndb makes govulncheck's check repeatable without its online
// database: `vulndb build -src DIR -out DB` turns the OSV entries of the
// golang.org/x/vulndb module (its data/osv directory) into the local v1
// database layout govulncheck reads with -db file://DB (index/db.json,
// index/modules.json, ID/<id>.json); `vulndb check` reads `govulncheck
// -format json` on standard input and fails on a vulnerability reachable
// from the code (a finding down to a function) in a dependency, listing
// those of the standard library and the toolchain, which a newer Go fixes.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "vulndb:", err)
		os.Exit(1)
	}
}

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: vulndb build -src DIR -out DB | vulndb check < govulncheck.json")
	}
	switch args[0] {
	case "build":
		fs := flag.NewFlagSet("build", flag.ContinueOnError)
		src := fs.String("src", "", "directory of OSV entries (golang.org/x/vulndb's data/osv)")
		out := fs.String("out", "", "directory to write the database to")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *src == "" || *out == "" {
			return errors.New("build: -src and -out are required")
		}
		n, err := build(*src, *out)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "vulndb: %d entries from %s in %s\n", n, *src, *out)
		return nil
	case "check":
		return check(stdin, stdout)
	}
	return fmt.Errorf("unknown command %q", args[0])
}

// osvEntry is the part of an OSV entry the index needs.
type osvEntry struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Aliases  []string  `json:"aliases"`
	Affected []struct {
		Package struct {
			Name string `json:"name"`
		} `json:"package"`
	} `json:"affected"`
}

type moduleVuln struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
}

type moduleMeta struct {
	Path  string       `json:"path"`
	Vulns []moduleVuln `json:"vulns"`
}

// build writes the database and returns how many entries it holds.
func build(src, out string) (int, error) {
	files, err := filepath.Glob(filepath.Join(src, "*.json"))
	if err != nil {
		return 0, err
	}
	if len(files) == 0 {
		return 0, fmt.Errorf("%s: no OSV entries", src)
	}
	if err := os.MkdirAll(filepath.Join(out, "ID"), 0o755); err != nil {
		return 0, err
	}
	if err := os.MkdirAll(filepath.Join(out, "index"), 0o755); err != nil {
		return 0, err
	}
	modules := map[string]*moduleMeta{}
	var latest time.Time
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return 0, err
		}
		var e osvEntry
		if err := json.Unmarshal(raw, &e); err != nil {
			return 0, fmt.Errorf("%s: %w", f, err)
		}
		if e.ID == "" {
			return 0, fmt.Errorf("%s: no id", f)
		}
		if err := os.WriteFile(filepath.Join(out, "ID", e.ID+".json"), raw, 0o644); err != nil {
			return 0, err
		}
		if e.Modified.After(latest) {
			latest = e.Modified
		}
		seen := map[string]bool{}
		for _, a := range e.Affected {
			p := a.Package.Name
			if p == "" || seen[p] {
				continue
			}
			seen[p] = true
			m := modules[p]
			if m == nil {
				m = &moduleMeta{Path: p}
				modules[p] = m
			}
			// No "fixed": govulncheck then reads every entry of a module it
			// finds and judges the versions itself.
			m.Vulns = append(m.Vulns, moduleVuln{ID: e.ID, Modified: e.Modified})
		}
	}
	var list []*moduleMeta
	for _, m := range modules {
		sort.Slice(m.Vulns, func(i, j int) bool { return m.Vulns[i].ID < m.Vulns[j].ID })
		list = append(list, m)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Path < list[j].Path })
	for name, v := range map[string]any{"modules.json": list, "db.json": map[string]time.Time{"modified": latest}} {
		b, err := json.Marshal(v)
		if err != nil {
			return 0, err
		}
		if err := os.WriteFile(filepath.Join(out, "index", name), b, 0o644); err != nil {
			return 0, err
		}
	}
	return len(files), nil
}

// message is one message of govulncheck's JSON stream.
type message struct {
	Finding *struct {
		OSV          string `json:"osv"`
		FixedVersion string `json:"fixed_version"`
		Trace        []struct {
			Module   string `json:"module"`
			Version  string `json:"version"`
			Package  string `json:"package"`
			Function string `json:"function"`
			Receiver string `json:"receiver"`
		} `json:"trace"`
	} `json:"finding"`
}

// check fails on a reachable vulnerability in a dependency.
func check(r io.Reader, w io.Writer) error {
	dec := json.NewDecoder(bufio.NewReader(r))
	type key struct{ id, module string }
	reached := map[key]string{}
	fixed := map[key]string{}
	msgs := 0
	for {
		var m message
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			return fmt.Errorf("check: govulncheck's output: %w", err)
		}
		msgs++
		f := m.Finding
		if f == nil || len(f.Trace) == 0 || f.Trace[0].Function == "" {
			continue // imported or required, never called
		}
		k := key{f.OSV, f.Trace[0].Module}
		fn := f.Trace[0].Package + "." + f.Trace[0].Function
		if f.Trace[0].Receiver != "" {
			fn = f.Trace[0].Package + "." + f.Trace[0].Receiver + "." + f.Trace[0].Function
		}
		reached[k] = fn
		fixed[k] = f.FixedVersion
	}
	if msgs == 0 {
		return errors.New("check: no output from govulncheck")
	}
	var deps, std []string
	for k, fn := range reached {
		line := fmt.Sprintf("%s in %s (fixed in %s), reached through %s", k.id, k.module, fixed[k], fn)
		if k.module == "stdlib" || k.module == "toolchain" {
			std = append(std, line)
		} else {
			deps = append(deps, line)
		}
	}
	sort.Strings(deps)
	sort.Strings(std)
	for _, l := range std {
		fmt.Fprintln(w, "standard library (a newer Go fixes it): "+l)
	}
	for _, l := range deps {
		fmt.Fprintln(w, "DEPENDENCY: "+l)
	}
	if len(deps) > 0 {
		return fmt.Errorf("%d reachable vulnerabilities in dependencies: upgrade them", len(deps))
	}
	fmt.Fprintf(w, "vulndb: no reachable vulnerability in a dependency (%d in the standard library)\n", len(std))
	return nil
}
