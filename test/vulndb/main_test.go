package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBuildAndCheck(t *testing.T) {
	src := t.TempDir()
	for id, mod := range map[string]string{"GO-2026-0001": "example.com/dep", "GO-2026-0002": "stdlib"} {
		e := map[string]any{"id": id, "modified": "2026-01-02T03:04:05Z", "affected": []any{map[string]any{"package": map[string]any{"name": mod}}}}
		b, _ := json.Marshal(e)
		os.WriteFile(filepath.Join(src, id+".json"), b, 0o644)
	}
	out := t.TempDir()
	if n, err := build(src, out); err != nil || n != 2 {
		t.Fatalf("build = %d, %v", n, err)
	}
	var mods []moduleMeta
	b, _ := os.ReadFile(filepath.Join(out, "index", "modules.json"))
	if err := json.Unmarshal(b, &mods); err != nil || len(mods) != 2 || mods[0].Path != "example.com/dep" || mods[0].Vulns[0].ID != "GO-2026-0001" {
		t.Errorf("modules.json: %s (%v)", b, err)
	}
	if _, err := os.Stat(filepath.Join(out, "ID", "GO-2026-0002.json")); err != nil {
		t.Error(err)
	}
	finding := func(id, mod, fn string) string {
		return `{"finding":{"osv":"` + id + `","fixed_version":"v1.2.3","trace":[{"module":"` + mod + `","package":"p","function":"` + fn + `"}]}}`
	}
	for _, tc := range []struct {
		name, stream string
		wantErr      bool
	}{
		{"stdlib only", `{"config":{}}` + finding("GO-2026-0002", "stdlib", "F"), false},
		{"a dependency imported, never called", `{"config":{}}` + finding("GO-2026-0001", "example.com/dep", ""), false},
		{"a dependency called", `{"config":{}}` + finding("GO-2026-0001", "example.com/dep", "F"), true},
		{"no output", ``, true},
	} {
		var w strings.Builder
		err := check(strings.NewReader(tc.stream), &w)
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: check = %v\n%s", tc.name, err, w.String())
		}
	}
}
