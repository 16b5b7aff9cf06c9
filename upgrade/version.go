package upgrade

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/version"
)

// parseVersion reads a Kubernetes release version, vMAJOR.MINOR.PATCH.
func parseVersion(s string) (*version.Version, error) {
	if !strings.HasPrefix(s, "v") {
		return nil, fmt.Errorf("%q is not a version like v1.34.4", s)
	}
	v, err := version.ParseSemantic(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not a version like v1.34.4: %w", s, err)
	}
	if v.PreRelease() != "" || v.BuildMetadata() != "" {
		return nil, fmt.Errorf("%q: only released versions are upgraded to", s)
	}
	return v, nil
}

// skew checks the version skew policy for an upgrade to target of a cluster
// whose API servers (and controller-manager and scheduler) run apiServers
// and whose kubelets run kubelets (each map: node name to version, read from
// the nodes). It names every node that blocks.
//
// kubeadm's rules: the control plane goes up one minor at a time (a patch
// of its own minor is fine too), never down; no kubelet is newer than the
// target (it would be newer than the API servers after the upgrade).
func skew(target *version.Version, apiServers, kubelets map[string]*version.Version) []string {
	var why []string
	for _, name := range sortedKeys(apiServers) {
		v := apiServers[name]
		switch {
		case target.LessThan(v):
			why = append(why, fmt.Sprintf("%s: its control plane runs %s: %s would be a downgrade, which kubeadm does not do", name, v, target))
		case target.Major() != v.Major() || target.Minor() > v.Minor()+1:
			why = append(why, fmt.Sprintf("%s: its control plane runs %s: upgrade one minor at a time (to v%d.%d.x first), %s skips a minor", name, v, v.Major(), v.Minor()+1, target))
		}
	}
	for _, name := range sortedKeys(kubelets) {
		v := kubelets[name]
		if target.LessThan(v) {
			why = append(why, fmt.Sprintf("%s: its kubelet runs %s, newer than %s: a kubelet is never newer than the API servers", name, v, target))
		}
	}
	return why
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
