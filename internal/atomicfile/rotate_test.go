package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRotateInto(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "etcd.db")
	save := func(content string, keep int) {
		t.Helper()
		part := file + ".part"
		if err := os.WriteFile(part, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := RotateInto(part, file, keep); err != nil {
			t.Fatal(err)
		}
	}
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			return "<absent>"
		}
		return string(b)
	}
	for _, c := range []string{"1", "2", "3", "4", "5"} {
		save(c, 3)
	}
	for p, want := range map[string]string{file: "5", file + ".1": "4", file + ".2": "3", file + ".3": "<absent>", file + ".part": "<absent>"} {
		if got := read(p); got != want {
			t.Errorf("%s = %s, want %s", filepath.Base(p), got, want)
		}
	}
	// keep 0 replaces FILE and leaves the numbered ones alone.
	save("6", 0)
	if read(file) != "6" || read(file+".1") != "4" {
		t.Errorf("keep 0: %s %s", read(file), read(file+".1"))
	}
}
