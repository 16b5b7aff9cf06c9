package node

import (
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pkg/sftp"
)

// sftpPipe is an SFTP client talking to an in-process SFTP server that
// serves this machine's files.
func sftpPipe(t *testing.T) *sftp.Client {
	t.Helper()
	cr, sw := io.Pipe()
	sr, cw := io.Pipe()
	srv, err := sftp.NewServer(struct {
		io.Reader
		io.WriteCloser
	}{sr, sw})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	c, err := sftp.NewClientPipe(cr, cw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(); cw.Close(); sr.Close(); c.Close() })
	return c
}

// pausingReader calls at once it has given half of its content.
type pausingReader struct {
	r    io.Reader
	n    int
	at   int
	done bool
	f    func()
}

func (p *pausingReader) Read(b []byte) (int, error) {
	if !p.done && p.n >= p.at {
		p.done = true
		p.f()
	}
	if len(b) > 512 {
		b = b[:512]
	}
	k, err := p.r.Read(b)
	p.n += k
	return k, err
}

// TestSFTPWriteNeverReachableByOthers: while a file holding a key is being
// written over SFTP, no other user can reach it: it sits in a 0700
// directory of its own, never in the destination's directory under a
// predictable or readable name (security review, finding 7).
func TestSFTPWriteNeverReachableByOthers(t *testing.T) {
	c := sftpPipe(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	dest := filepath.Join(dir, "admin.conf")
	content := strings.Repeat("key material\n", 2000)
	checked := false
	r := &pausingReader{r: strings.NewReader(content), at: len(content) / 2, f: func() {
		checked = true
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || p == dir {
				return err
			}
			fi, _ := d.Info()
			if filepath.Dir(p) == dir && !d.IsDir() {
				t.Errorf("mid-write, %s (%v) sits in the destination's directory", p, fi.Mode())
			}
			if d.IsDir() && fi.Mode().Perm() != 0o700 {
				t.Errorf("mid-write, the temporary directory %s is %v, not 0700", p, fi.Mode().Perm())
			}
			return nil
		})
	}}
	if err := writeSFTP(context.Background(), c, dest, r, WriteOptions{Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	if !checked {
		t.Fatal("the write never paused")
	}
	if b, _ := os.ReadFile(dest); string(b) != content {
		t.Errorf("content: %d bytes", len(b))
	}
	if fi, _ := os.Stat(dest); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("left in the directory: %v", ents)
	}
}
