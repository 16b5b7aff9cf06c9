package etcd

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// fakeSnapshot is a body padded to 512 bytes followed by its sha256, as etcd
// streams it.
func fakeSnapshot(r *rand.Rand, n int) []byte {
	body := make([]byte, (n+511)/512*512)
	for i := range body {
		body[i] = byte(r.UintN(256))
	}
	sum := sha256.Sum256(body)
	return append(body, sum[:]...)
}

func TestTrailerHash(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{0, 1, 512, 4096, 100_000} {
		snap := fakeSnapshot(r, size)
		for _, chunk := range []int{1, 7, 31, 32, 33, 512, 1 << 20} {
			th := NewTrailerHash()
			for off := 0; off < len(snap); {
				// vary chunk sizes around the nominal one
				n := min(len(snap)-off, 1+r.IntN(chunk))
				th.Write(snap[off : off+n])
				off += n
			}
			if err := th.Check(); err != nil {
				t.Fatalf("size %d chunk %d: %v", size, chunk, err)
			}
			if th.Size() != int64(len(snap)) {
				t.Fatalf("size %d", th.Size())
			}
		}
		// One flipped byte in the body is caught.
		bad := bytes.Clone(snap)
		bad[len(bad)/3] ^= 1
		th := NewTrailerHash()
		th.Write(bad)
		if err := th.Check(); !errors.Is(err, ErrTrailerMismatch) && size > 0 {
			t.Fatalf("size %d: flipped byte: %v", size, err)
		}
	}
	// A truncated stream has no trailer.
	th := NewTrailerHash()
	th.Write(fakeSnapshot(r, 4096)[:4000])
	if err := th.Check(); !errors.Is(err, ErrNoTrailer) {
		t.Fatalf("truncated: %v", err)
	}
}

func TestHasTrailer(t *testing.T) {
	for n, want := range map[int64]bool{32: true, 544: true, 1<<30 + 32: true, 0: false, 512: false, 543: false} {
		if HasTrailer(n) != want {
			t.Errorf("HasTrailer(%d) != %v", n, want)
		}
	}
}

func TestRotateInto(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "etcd.db")
	save := func(content string, keep int) {
		t.Helper()
		part := file + ".part"
		if err := os.WriteFile(part, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := rotateInto(part, file, keep); err != nil {
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
