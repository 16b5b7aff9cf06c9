package pki

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/kbootstrap/kbootstrap/report"
)

// WriteTable writes, per node, every certificate with its expiry date and
// residual time (as kubeadm certs check-expiration prints them), the worst
// first, then the findings that are not ok (all of them when verbose).
func (r *Result) WriteTable(w io.Writer, verbose bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tCERTIFICATE\tEXPIRES\tRESIDUAL TIME\tCERTIFICATE AUTHORITY\tEXTERNALLY MANAGED\tKEY\tSTATUS")
	for _, c := range r.Certificates {
		ca := c.CA
		if c.IsCA {
			ca = "-"
		}
		ext := "no"
		if c.ExternallyManaged {
			ext = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Node, c.File, c.NotAfter.UTC().Format(DateFormat), Residual(c.NotAfter.Sub(r.Time)),
			ca, ext, c.KeyType, strings.ToUpper(string(c.Severity)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return r.Findings.WriteTable(w, verbose)
}

// WriteProm writes the audit in the Prometheus text exposition format, for
// node_exporter's textfile collector: each certificate's expiry and start
// as Unix times, and the findings per node and severity.
func (r *Result) WriteProm(w io.Writer) error {
	var b strings.Builder
	metric := func(name, help string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name)
	}
	metric("kbootstrap_pki_certificate_expiry_timestamp_seconds", "NotAfter of a certificate kubeadm manages, as a Unix time.")
	for _, c := range r.Certificates {
		fmt.Fprintf(&b, "kbootstrap_pki_certificate_expiry_timestamp_seconds{%s} %d\n", certLabels(c), c.NotAfter.Unix())
	}
	metric("kbootstrap_pki_certificate_not_before_timestamp_seconds", "NotBefore of a certificate kubeadm manages, as a Unix time.")
	for _, c := range r.Certificates {
		fmt.Fprintf(&b, "kbootstrap_pki_certificate_not_before_timestamp_seconds{%s} %d\n", certLabels(c), c.NotBefore.Unix())
	}
	metric("kbootstrap_pki_findings", "Findings of the last PKI audit per node and severity.")
	counts := map[string]map[report.Severity]int{}
	for _, n := range r.Nodes {
		counts[n] = map[report.Severity]int{}
	}
	for _, f := range r.Findings.Findings {
		if counts[f.Node] == nil {
			counts[f.Node] = map[report.Severity]int{}
		}
		counts[f.Node][f.Severity]++
	}
	nodes := make([]string, 0, len(counts))
	for n := range counts {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	for _, n := range nodes {
		for _, s := range []report.Severity{report.OK, report.Warn, report.Fail} {
			fmt.Fprintf(&b, "kbootstrap_pki_findings{node=\"%s\",severity=\"%s\"} %d\n", escapeLabel(n), s, counts[n][s])
		}
	}
	metric("kbootstrap_pki_audit_timestamp_seconds", "When the PKI audit ran, as a Unix time.")
	fmt.Fprintf(&b, "kbootstrap_pki_audit_timestamp_seconds %d\n", r.Time.Unix())
	_, err := io.WriteString(w, b.String())
	return err
}

func certLabels(c CertStatus) string {
	ca := c.CA
	if c.IsCA {
		ca = ""
	}
	return fmt.Sprintf(`node="%s",file="%s",name="%s",ca="%s",externally_managed="%s"`,
		escapeLabel(c.Node), escapeLabel(c.File), escapeLabel(c.Name), escapeLabel(ca), strconv.FormatBool(c.ExternallyManaged))
}

// escapeLabel escapes a label value: backslash, double quote and newline.
func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}
