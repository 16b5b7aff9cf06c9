package upgrade

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/version"
)

func TestSkew(t *testing.T) {
	v := version.MustParseSemantic
	cps := func(vs ...string) map[string]*version.Version {
		m := map[string]*version.Version{}
		for i, s := range vs {
			m["cp"+string(rune('1'+i))] = v(s)
		}
		return m
	}
	tests := []struct {
		name     string
		to       string
		cps      map[string]*version.Version
		kubelets map[string]*version.Version
		want     []string // substrings, one per reason; none: allowed
	}{
		{"next minor", "v1.34.4", cps("v1.33.13", "v1.33.13"), map[string]*version.Version{"w1": v("v1.33.13")}, nil},
		{"a patch", "v1.34.4", cps("v1.34.2"), nil, nil},
		{"resumed: some control planes already there", "v1.34.4", cps("v1.34.4", "v1.33.13"), nil, nil},
		{"kubelets two minors behind are fine", "v1.34.4", cps("v1.33.13"), map[string]*version.Version{"w1": v("v1.32.9")}, nil},
		{"a skipped minor", "v1.35.0", cps("v1.33.13"), nil, []string{"cp1: its control plane runs 1.33.13: upgrade one minor at a time (to v1.34.x first)"}},
		{"a downgrade", "v1.32.0", cps("v1.33.13"), nil, []string{"cp1: its control plane runs 1.33.13: 1.32.0 would be a downgrade"}},
		{"a patch downgrade", "v1.34.1", cps("v1.34.4", "v1.34.4"), nil, []string{"cp1:", "cp2:"}},
		{"a major", "v2.0.0", cps("v1.34.4"), nil, []string{"one minor at a time"}},
		{"a kubelet newer than the target", "v1.34.4", cps("v1.34.0"), map[string]*version.Version{"w1": v("v1.35.0")}, []string{"w1: its kubelet runs 1.35.0, newer than 1.34.4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := skew(v(tt.to), tt.cps, tt.kubelets)
			if len(got) != len(tt.want) {
				t.Fatalf("skew = %q, want %d reasons %q", got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("reason %d = %q, want it to hold %q", i, got[i], w)
				}
			}
		})
	}
}

func TestParseVersion(t *testing.T) {
	for _, s := range []string{"v1.34.4", "v1.33.13"} {
		if _, err := parseVersion(s); err != nil {
			t.Errorf("parseVersion(%q): %v", s, err)
		}
	}
	for _, s := range []string{"1.34.4", "v1.34", "v1.34.0-rc.1", "latest", ""} {
		if _, err := parseVersion(s); err == nil {
			t.Errorf("parseVersion(%q): no error", s)
		}
	}
}

func TestManifestImageTag(t *testing.T) {
	for in, want := range map[string]string{
		"    image: registry.k8s.io/kube-apiserver:v1.33.13\n":       "v1.33.13",
		"  - image: registry.k8s.io/kube-scheduler:v1.34.4\n":        "",
		"    image: my.registry:5000/k8s/kube-apiserver:v1.34.4  \n": "v1.34.4",
		"    image: registry.k8s.io/etcd:3.6.5-0\n":                  "",
	} {
		got := ""
		if m := imageTag.FindStringSubmatch(in); m != nil {
			got = m[1]
		}
		if got != want {
			t.Errorf("imageTag(%q) = %q, want %q", in, got, want)
		}
	}
}
