package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/kbootstrap/kbootstrap/cmd/kbootstrap/internal/cli"
	"github.com/kbootstrap/kbootstrap/node"
)

func TestRunVersionJSON(t *testing.T) {
	var out bytes.Buffer
	if err := Run(context.Background(), cli.Streams{Out: &out, Err: &out}, []string{"-o", "json", "version"}); err != nil {
		t.Fatal(err)
	}
	var v struct{ Version, Commit, GoVersion string }
	if err := json.Unmarshal(out.Bytes(), &v); err != nil || v.GoVersion == "" {
		t.Fatalf("version -o json: %v %q", err, out.String())
	}
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"bad output flag", []string{"-o", "xml", "version"}, 2},
		{"missing inventory", []string{"-i", "/nonexistent/kbootstrap.yaml", "exec", "--", "true"}, 2},
		{"unknown command", []string{"frobnicate"}, 2},
		{"not implemented", []string{"certs", "renew"}, 2},
		{"ok", []string{"version"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := Run(context.Background(), cli.Streams{Out: &out, Err: &errb}, tt.args)
			if got := ExitCode(err, &errb); got != tt.want {
				t.Errorf("exit %d, want %d (%v)", got, tt.want, err)
			}
		})
	}
	if got := ExitCode(cli.Exit(1), &bytes.Buffer{}); got != 1 {
		t.Errorf("warnings: exit %d, want 1", got)
	}
}

func TestFinalErrorIsRedacted(t *testing.T) {
	red := &node.Redactor{}
	red.Add("abcdef0123456789abcdef")
	var errb bytes.Buffer
	w := red.Writer(&errb)
	ExitCode(fmt.Errorf("join cp2: %w", errors.New("bad certificate key abcdef0123456789abcdef")), w)
	w.Flush()
	if strings.Contains(errb.String(), "abcdef0123456789abcdef") || !strings.Contains(errb.String(), node.Redacted) {
		t.Fatalf("final error not redacted: %q", errb.String())
	}
}
