package playbooks

import (
	"strings"
	"testing"
)

// FuzzParse: a playbook file parses or is refused, never panics; a parsed
// one names itself.
func FuzzParse(f *testing.F) {
	f.Add([]byte("name: x\nhosts: all\ntasks:\n  - name: t\n    shell: {cmd: true}\n"))
	f.Add([]byte("name: x\nhosts: all\nvars: {a: 1}\nhandlers:\n  - name: h\n    service: {name: s, state: restarted}\ntasks:\n  - name: t\n    file: {path: /x, state: '{{ .vars.a }}'}\n    notify: [h]\n"))
	f.Add([]byte("tasks: [1, 2]\n"))
	f.Add([]byte("name: &a [*a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pb, err := Parse("fuzz.yaml", data, nil)
		if err == nil && pb == nil {
			t.Fatal("no playbook and no error")
		}
	})
}

// FuzzParseFacts: whatever a node prints, its facts parse.
func FuzzParseFacts(f *testing.F) {
	f.Add("os=debian\narch=x86_64\ncpus=2\nmemory_mb=2048\nswap_devices=0\naddresses=10.0.0.1 \n")
	f.Add("cpus=x\nswap_devices=-1\narch=\n=\n")
	f.Fuzz(func(t *testing.T, out string) {
		facts := parseFacts(out)
		if _, ok := facts["swap_on"].(bool); !ok {
			t.Fatalf("swap_on missing: %v", facts)
		}
	})
}

// FuzzParseHashListing: upload's listing of the files on a node parses.
func FuzzParseHashListing(f *testing.F) {
	f.Add("0123 644 a/b\nbad\n")
	f.Fuzz(func(t *testing.T, out string) {
		for name, r := range parseHashListing(out) {
			if strings.Contains(name, "\n") || strings.Contains(r.sum, " ") {
				t.Fatalf("%q: %+v", name, r)
			}
		}
	})
}
