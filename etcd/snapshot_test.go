package etcd

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
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
