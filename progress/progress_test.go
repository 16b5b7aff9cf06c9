package progress_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/kbootstrap/kbootstrap/node"
	"github.com/kbootstrap/kbootstrap/progress"
)

func TestStatusLinesRedacted(t *testing.T) {
	var b bytes.Buffer
	r := &node.Redactor{}
	r.Add("s3cr3t")
	st := progress.NewStatus(&b, false, r)
	defer st.Close()
	s := st.Start("Joining control plane cp2")
	s.End(nil)
	st.Start("Joining worker w1").End(errors.New("token s3cr3t refused"))
	w := node.PrefixWriter(st, "cp1: ", r)
	w.Write([]byte("--certificate-key s3cr3t\n"))
	out := b.String()
	for _, want := range []string{"✓ Joining control plane cp2 (", "✗ Joining worker w1 (", "token [REDACTED] refused", "cp1: --certificate-key [REDACTED]\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "s3cr3t") || strings.Contains(out, "\r") {
		t.Errorf("secret or spinner in non-terminal output:\n%q", out)
	}
}
