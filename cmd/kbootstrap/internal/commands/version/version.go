// Package version is `kbootstrap version`.
package version

import (
	"encoding/json"
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/kbootstrap/kbootstrap/cmd/kbootstrap/internal/cli"
)

// Info is what `version` prints.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// NewCommand returns `version`.
func NewCommand(g *cli.Globals, version, commit string) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print version, commit and Go version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info := Info{Version: version, Commit: commit, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
			out := g.Streams.Out
			switch g.Output {
			case cli.OutputJSON:
				b, _ := json.MarshalIndent(info, "", "  ")
				fmt.Fprintln(out, string(b))
			case cli.OutputYAML:
				b, _ := yaml.Marshal(info)
				fmt.Fprint(out, string(b))
			default:
				fmt.Fprintf(out, "kbootstrap %s (commit %s, %s, %s)\n", info.Version, info.Commit, info.GoVersion, info.Platform)
			}
			return nil
		},
	}
}
