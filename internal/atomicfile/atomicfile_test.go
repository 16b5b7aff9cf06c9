package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		setup   func(p string)
		mode    os.FileMode
		content string
	}{
		{"new file", func(string) {}, 0o600, "a"},
		{"replaces a file", func(p string) { os.WriteFile(p, []byte("old"), 0o644) }, 0o640, "b"},
		{"replaces a planted symlink, never writes through it", func(p string) {
			os.WriteFile(filepath.Join(dir, "victim"), []byte("victim"), 0o644)
			os.Symlink(filepath.Join(dir, "victim"), p)
		}, 0o600, "c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			tc.setup(p)
			if err := WriteBytes(p, []byte(tc.content), Options{Mode: tc.mode}); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Lstat(p)
			if err != nil {
				t.Fatal(err)
			}
			if !fi.Mode().IsRegular() || fi.Mode().Perm() != tc.mode {
				t.Errorf("mode %v, want a regular file %v", fi.Mode(), tc.mode)
			}
			if b, _ := os.ReadFile(p); string(b) != tc.content {
				t.Errorf("content %q", b)
			}
		})
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "victim")); string(b) != "victim" {
		t.Errorf("the symlink's target was written: %q", b)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".kbtmp-") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}

func TestWriteMkdir(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a", "b", "f")
	if err := WriteBytes(p, []byte("x"), Options{}); err == nil {
		t.Error("missing directory without MkdirMode: no error")
	}
	if err := WriteBytes(p, []byte("x"), Options{MkdirMode: 0o700}); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(filepath.Dir(p))
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v", fi.Mode().Perm())
	}
}
