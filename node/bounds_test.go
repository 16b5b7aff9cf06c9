package node

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// boundFiles makes the files no ReadFile may read whole: a device, a
// named pipe (opening it would block), a directory, a sparse file larger
// than MaxReadSize; and one of exactly MaxReadSize bytes, which is read.
func boundFiles(t *testing.T) (dir string, refused map[string]error, exact string) {
	t.Helper()
	dir = t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(dir, "dir"), 0o755)
	for name, size := range map[string]int64{"big": MaxReadSize + 1, "exact": MaxReadSize} {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		f.Truncate(size)
		f.Close()
	}
	os.Symlink("/dev/zero", filepath.Join(dir, "zero-link"))
	return dir, map[string]error{
		"/dev/zero": ErrNotRegular, filepath.Join(dir, "zero-link"): ErrNotRegular,
		filepath.Join(dir, "fifo"): ErrNotRegular, filepath.Join(dir, "dir"): ErrNotRegular,
		filepath.Join(dir, "big"): ErrTooLarge,
	}, filepath.Join(dir, "exact")
}

// checkBoundedReads runs read on each refused file (which must fail with
// its error, naming the path, without blocking) and on the exact one.
func checkBoundedReads(t *testing.T, read func(ctx context.Context, p string) ([]byte, error)) {
	t.Helper()
	_, refused, exact := boundFiles(t)
	for p, want := range refused {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		b, err := read(ctx, p)
		cancel()
		var pe *fs.PathError
		if !errors.Is(err, want) || !errors.As(err, &pe) || pe.Path != p || b != nil {
			t.Errorf("read %s: %d bytes, %v; want %v naming the path", p, len(b), err, want)
		}
	}
	if b, err := read(context.Background(), exact); err != nil || len(b) != MaxReadSize {
		t.Errorf("read %s: %d bytes, %v", exact, len(b), err)
	}
}

func TestReadFileBounded(t *testing.T) {
	t.Run("local", func(t *testing.T) { checkBoundedReads(t, NewLocal("local", nil).ReadFile) })
	t.Run("sftp", func(t *testing.T) {
		c := sftpPipe(t)
		checkBoundedReads(t, func(ctx context.Context, p string) ([]byte, error) { return readSFTP(ctx, c, p) })
	})
	t.Run("sudo", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root: sudo -n must succeed without a password")
		}
		if _, err := exec.LookPath("sudo"); err != nil {
			t.Skip("sudo is not installed (apt-get install sudo)")
		}
		checkBoundedReads(t, Sudo(unprivileged{NewLocal("local", nil)}).ReadFile)
	})
}

// TestRunOutputBounded: a command that prints without end is ended once its
// output passes MaxReadSize, with ErrTooLarge; one that prints less keeps
// all of it.
func TestRunOutputBounded(t *testing.T) {
	n := NewLocal("local", nil)
	for _, cmd := range []string{"yes", "yes >&2", "head -c 40000000 /dev/zero"} {
		start := time.Now()
		res, err := n.Run(context.Background(), cmd)
		if !errors.Is(err, ErrTooLarge) || len(res.Stdout) > MaxReadSize || len(res.Stderr) > MaxReadSize {
			t.Errorf("%s: %d+%d bytes, %v", cmd, len(res.Stdout), len(res.Stderr), err)
		}
		t.Logf("%s: %v after %s", cmd, err, time.Since(start).Round(time.Millisecond))
	}
	res, err := n.Run(context.Background(), "head -c 1000000 /dev/zero")
	if err != nil || len(res.Stdout) != 1000000 {
		t.Errorf("1 MB of output: %d bytes, %v", len(res.Stdout), err)
	}
}

// TestLineWriterBounded: a line without end is written in pieces, its
// buffer stays bounded, and no secret is cut in two: joined again, the
// pieces are the redacted line.
func TestLineWriterBounded(t *testing.T) {
	r := &Redactor{}
	secret := "S3CR3T-" + strings.Repeat("k", 100) + "-END"
	r.Add(secret)
	var line strings.Builder
	for line.Len() < 4*maxLine {
		// Secrets at and around every multiple of maxLine.
		line.WriteString(strings.Repeat("x", maxLine-line.Len()%maxLine-30))
		line.WriteString(secret)
	}
	var out strings.Builder
	w := r.Writer(&out)
	for _, c := range []byte(line.String()) {
		w.Write([]byte{c})
		if len(w.buf) > maxLine+len(secret) {
			t.Fatalf("buffer holds %d bytes", len(w.buf))
		}
	}
	w.Flush()
	if strings.Contains(out.String(), "S3CR3T") || strings.Contains(out.String(), "kkkk-END") {
		t.Fatal("a piece of the secret is in the output")
	}
	if got, want := strings.ReplaceAll(out.String(), "\n", ""), RedactString(line.String(), []string{secret}); got != want {
		t.Errorf("the pieces joined are not the redacted line (%d vs %d bytes)", len(got), len(want))
	}
	if n := strings.Count(out.String(), "\n"); n < 4 {
		t.Errorf("%d pieces", n)
	}
}
