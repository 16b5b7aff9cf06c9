package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"strconv"
	"strings"
	"time"
)

// Sudo returns n with every command and file operation run as root through
// `sudo -n`. A node that is already privileged is returned unchanged.
func Sudo(n Node) Node {
	if n.Privileged() {
		return n
	}
	return &sudoNode{inner: n}
}

type sudoNode struct {
	inner Node
}

func (s *sudoNode) Name() string     { return s.inner.Name() }
func (s *sudoNode) Privileged() bool { return true }

func (s *sudoNode) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return s.inner.Dial(ctx, network, addr)
}

// sudoCmd wraps cmd so that it runs under sudo -n in a POSIX shell.
func sudoCmd(cmd string) string { return "sudo -n -- sh -c " + ShellQuote(cmd) }

func (s *sudoNode) Run(ctx context.Context, cmd string, opts ...ExecOption) (Result, error) {
	o := Apply(opts)
	// Log the command as the caller wrote it, not the sudo wrapper around it.
	res, err := s.inner.Run(ctx, sudoCmd(cmd), append(opts[:len(opts):len(opts)], viaSudo())...)
	var ee *ExitError
	if errors.As(err, &ee) {
		if sudoWantsPassword(res.Stderr) {
			return res, fmt.Errorf("%s: %w", loggedCmd(cmd, o), ErrSudoPassword)
		}
		ee.Cmd = loggedCmd(cmd, o)
	}
	return res, err
}

func sudoWantsPassword(stderr []byte) bool {
	return bytes.Contains(stderr, []byte("sudo: a password is required")) ||
		bytes.Contains(stderr, []byte("sudo: a terminal is required")) ||
		bytes.Contains(stderr, []byte("may not run sudo"))
}

func (s *sudoNode) ReadFile(ctx context.Context, p string) ([]byte, error) {
	q := ShellQuote(p)
	// head reads one byte more than the bound, to tell a file of exactly
	// MaxReadSize bytes from a larger one.
	cmd := fmt.Sprintf(`[ -e %[1]s ] || { echo %[1]s": No such file or directory" >&2; exit 1; }
[ -f %[1]s ] || { echo %[1]s": %[2]s" >&2; exit 1; }
exec head -c %[3]d -- %[1]s`, q, ErrNotRegular, MaxReadSize+1)
	// One byte over makes Run end it with ErrTooLarge (fileError keeps it).
	res, err := s.Run(ctx, cmd, HideOutput())
	if err != nil {
		return nil, fileError("read", p, res, err)
	}
	return res.Stdout, nil
}

// fileError maps "No such file" from a coreutils command to fs.ErrNotExist.
func fileError(op, p string, res Result, err error) error {
	if bytes.Contains(res.Stderr, []byte("No such file or directory")) {
		return &fs.PathError{Op: op, Path: p, Err: fs.ErrNotExist}
	}
	if bytes.Contains(res.Stderr, []byte("Permission denied")) {
		return &fs.PathError{Op: op, Path: p, Err: fs.ErrPermission}
	}
	if bytes.Contains(res.Stderr, []byte(": "+ErrNotRegular.Error())) {
		return &fs.PathError{Op: op, Path: p, Err: ErrNotRegular}
	}
	if errors.Is(err, ErrTooLarge) {
		return &fs.PathError{Op: op, Path: p, Err: ErrTooLarge}
	}
	return &fs.PathError{Op: op, Path: p, Err: err}
}

// statFormat prints size, raw mode (hex), uid, gid, mtime and name.
const statFormat = `%s %f %u %g %Y %n`

func (s *sudoNode) Stat(ctx context.Context, p string) (FileInfo, error) {
	res, err := s.Run(ctx, "stat -c "+ShellQuote(statFormat)+" -- "+ShellQuote(p))
	if err != nil {
		return FileInfo{}, fileError("stat", p, res, err)
	}
	return parseStatLine(strings.TrimSpace(string(res.Stdout)))
}

func (s *sudoNode) ReadDir(ctx context.Context, dir string) ([]FileInfo, error) {
	q := ShellQuote(dir)
	cmd := "[ -e " + q + " ] || { echo " + q + ": No such file or directory >&2; exit 2; }; cd " + q + " && for f in * .[!.]* ..?*; do [ -e \"$f\" ] || [ -L \"$f\" ] || continue; stat -c " + ShellQuote(statFormat) + " -- \"$f\"; done"
	res, err := s.Run(ctx, cmd)
	if err != nil {
		return nil, fileError("readdir", dir, res, err)
	}
	var out []FileInfo
	for _, line := range strings.Split(strings.TrimSpace(string(res.Stdout)), "\n") {
		if line == "" {
			continue
		}
		fi, err := parseStatLine(line)
		if err != nil {
			return nil, err
		}
		out = append(out, fi)
	}
	return out, nil
}

// parseStatLine parses one line of statFormat.
func parseStatLine(line string) (FileInfo, error) {
	f := strings.SplitN(line, " ", 6)
	if len(f) != 6 {
		return FileInfo{}, fmt.Errorf("unexpected stat output %q", line)
	}
	size, err1 := strconv.ParseInt(f[0], 10, 64)
	raw, err2 := strconv.ParseUint(f[1], 16, 32)
	uid, err3 := strconv.Atoi(f[2])
	gid, err4 := strconv.Atoi(f[3])
	mtime, err5 := strconv.ParseInt(f[4], 10, 64)
	if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
		return FileInfo{}, fmt.Errorf("unexpected stat output %q: %w", line, err)
	}
	return FileInfo{Name: path.Base(f[5]), Size: size, Mode: unixMode(uint32(raw)), UID: uid, GID: gid, ModTime: time.Unix(mtime, 0)}, nil
}

// unixMode converts a raw st_mode to an fs.FileMode.
func unixMode(raw uint32) fs.FileMode {
	m := fs.FileMode(raw & 0o777)
	switch raw & 0o170000 {
	case 0o040000:
		m |= fs.ModeDir
	case 0o120000:
		m |= fs.ModeSymlink
	case 0o010000:
		m |= fs.ModeNamedPipe
	case 0o140000:
		m |= fs.ModeSocket
	case 0o020000:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case 0o060000:
		m |= fs.ModeDevice
	}
	if raw&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if raw&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if raw&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// WriteFile writes through a root shell: the content goes to a temporary file
// next to p, and only when exactly the expected number of bytes arrived is it
// chmod'ed, chown'ed, synced and renamed over p. A dropped connection leaves
// at most the temporary file, never a partial p.
func (s *sudoNode) WriteFile(ctx context.Context, p string, r io.Reader, opts WriteOptions) error {
	size, r, err := sizedReader(r)
	if err != nil {
		return err
	}
	mode := opts.Mode
	if mode == 0 {
		mode = 0o644
	}
	dir, base := path.Split(p)
	if dir == "" {
		dir = "."
	}
	script := fmt.Sprintf(`set -e
t=$(mktemp %s)
trap 'rm -f "$t"' EXIT
head -c %d > "$t"
[ "$(stat -c %%s "$t")" = %d ] || { echo "short write: $(stat -c %%s "$t") of %d bytes" >&2; exit 1; }
chmod %o "$t"
`, ShellQuote(path.Join(dir, "."+base+".kbtmp-XXXXXX")), size, size, size, mode.Perm())
	if opts.Chown {
		script += fmt.Sprintf("chown %d:%d \"$t\"\n", opts.UID, opts.GID)
	}
	// mv -T: a directory planted at p is an error, never a place to move the
	// file into (where the directory's owner could swap it). Then the
	// directory is synced, so the rename survives a crash.
	script += fmt.Sprintf("sync \"$t\" 2>/dev/null || sync\nmv -fT \"$t\" %s\ntrap - EXIT\nsync %s 2>/dev/null || true\n", ShellQuote(p), ShellQuote(dir))
	res, err := s.Run(ctx, script, Stdin(r), HideOutput())
	if err != nil {
		return fileError("write", p, res, err)
	}
	return nil
}

// sizedReader returns the number of bytes r holds, buffering it only when the
// size cannot be known otherwise.
func sizedReader(r io.Reader) (int64, io.Reader, error) {
	switch v := r.(type) {
	case interface{ Len() int }:
		return int64(v.Len()), r, nil
	case *os.File:
		fi, err := v.Stat()
		if err == nil && fi.Mode().IsRegular() {
			off, err := v.Seek(0, io.SeekCurrent)
			if err == nil {
				return fi.Size() - off, r, nil
			}
		}
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return 0, nil, err
	}
	return int64(len(b)), bytes.NewReader(b), nil
}

func (s *sudoNode) Remove(ctx context.Context, p string) error {
	res, err := s.Run(ctx, "rm -f -- "+ShellQuote(p)+" 2>/dev/null || rmdir -- "+ShellQuote(p))
	if err != nil {
		return fileError("remove", p, res, err)
	}
	return nil
}
