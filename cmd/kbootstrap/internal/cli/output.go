package cli

import (
	"encoding/json"
	"fmt"

	"sigs.k8s.io/yaml"

	"github.com/kbootstrap/kbootstrap/node"
)

// Encode writes v as JSON or YAML per -o; it returns false for table output.
func (g *Globals) Encode(v any) (bool, error) {
	switch g.Output {
	case OutputJSON:
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return true, err
		}
		_, err = fmt.Fprintln(g.Streams.Out, string(b))
		return true, err
	case OutputYAML:
		b, err := yaml.Marshal(v)
		if err != nil {
			return true, err
		}
		_, err = g.Streams.Out.Write(b)
		return true, err
	}
	return false, nil
}

// Report prints per-node results in the -o format (table output was already
// streamed) and a line per failed node on stderr, and turns runErr into exit
// code 2 without losing any node's result.
func Report[T any](g *Globals, results []T, runErr error) error {
	if _, err := g.Encode(results); err != nil {
		return err
	}
	if runErr == nil {
		return nil
	}
	for _, ne := range node.NodeErrors(runErr) {
		fmt.Fprintf(g.Streams.Err, "✗ %s\n", g.Redactor.String(ne.Error()))
	}
	return Exit(2)
}
