package report

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// Severity of a finding.
type Severity string

// Severities, from best to worst.
const (
	OK   Severity = "ok"
	Warn Severity = "warn"
	Fail Severity = "fail"
)

func (s Severity) rank() int {
	switch s {
	case Fail:
		return 2
	case Warn:
		return 1
	}
	return 0
}

// Finding is one judged fact. Check is a stable identifier (e.g.
// "cert.expiry"); File is relative to the audited directory ("etcd/ca.crt",
// "admin.conf") or empty for node-wide findings.
type Finding struct {
	Node     string   `json:"node"`
	Check    string   `json:"check"`
	File     string   `json:"file"`
	Severity Severity `json:"severity"`
	Message  string   `json:"message"`
	// Time is when the finding was judged and Seconds how long its check
	// took; set by checks that act on a live cluster (verify), omitted by
	// the audits of files.
	Time    string  `json:"time,omitempty"`
	Seconds float64 `json:"seconds,omitempty"`
}

// Findings is the JSON document of a check or an audit.
type Findings struct {
	Findings []Finding `json:"findings"`
}

// Add appends a finding.
func (f *Findings) Add(fd Finding) { f.Findings = append(f.Findings, fd) }

// Worst returns the worst severity present (OK for none).
func (f *Findings) Worst() Severity {
	w := OK
	for _, fd := range f.Findings {
		if fd.Severity.rank() > w.rank() {
			w = fd.Severity
		}
	}
	return w
}

// ExitCode is 0 when everything is ok, 1 with warnings only, 2 with a failure.
func (f *Findings) ExitCode() int { return f.Worst().rank() }

// Sort orders findings per node, failures first, then by file and check.
func (f *Findings) Sort() {
	sort.SliceStable(f.Findings, func(i, j int) bool {
		a, b := f.Findings[i], f.Findings[j]
		if a.Node != b.Node {
			return a.Node < b.Node
		}
		if a.Severity.rank() != b.Severity.rank() {
			return a.Severity.rank() > b.Severity.rank()
		}
		if a.File != b.File {
			return a.File < b.File
		}
		return a.Check < b.Check
	})
}

// WriteJSON writes the stable JSON shape {"findings": [...]}.
func (f *Findings) WriteJSON(w io.Writer) error {
	doc := *f
	if doc.Findings == nil {
		doc.Findings = []Finding{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

// WriteTable writes one line per finding, grouped per node, failures first.
// With verbose false, ok findings are summarised as a count per node.
func (f *Findings) WriteTable(w io.Writer, verbose bool) error {
	f.Sort()
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSEVERITY\tCHECK\tFILE\tMESSAGE")
	okCount := map[string]int{}
	var nodes []string
	for _, fd := range f.Findings {
		if _, seen := okCount[fd.Node]; !seen {
			nodes = append(nodes, fd.Node)
			okCount[fd.Node] = 0
		}
		if fd.Severity == OK && !verbose {
			okCount[fd.Node]++
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", fd.Node, strings.ToUpper(string(fd.Severity)), fd.Check, fd.File, fd.Message)
	}
	if !verbose {
		for _, n := range nodes {
			if c := okCount[n]; c > 0 {
				fmt.Fprintf(tw, "%s\tOK\t\t\t%d checks passed\n", n, c)
			}
		}
	}
	return tw.Flush()
}
