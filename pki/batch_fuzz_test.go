package pki

import "testing"

// FuzzParseBatch: a batch read's output, whatever the node sends, is split
// among the files without panicking, and never hands a file more bytes
// than the output holds.
func FuzzParseBatch(f *testing.F) {
	f.Add([]byte("F 3\nabcN\nE\n"), 3)
	f.Add([]byte("F -1\n"), 1)
	f.Add([]byte("F 99999999999999999999\nx"), 1)
	f.Add([]byte("X\n"), 2)
	f.Fuzz(func(t *testing.T, out []byte, n int) {
		if n < 0 || n > 16 {
			return
		}
		files := make([]*fileData, n)
		for i := range files {
			files[i] = &fileData{Path: "/etc/kubernetes/pki/f"}
		}
		if err := parseBatch(out, files); err != nil {
			return
		}
		total := 0
		for _, fd := range files {
			total += len(fd.Data)
		}
		if total > len(out) {
			t.Fatalf("%d bytes handed out of %d", total, len(out))
		}
	})
}

// FuzzParseManifest: a static pod manifest parses without panicking.
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte("apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - command: [kube-apiserver, --client-ca-file=/etc/kubernetes/pki/ca.crt]\n    image: registry.k8s.io/kube-apiserver:v1.34.4\n"))
	f.Add([]byte("spec: {containers: 7}"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		_, _ = parseManifest(raw)
	})
}
