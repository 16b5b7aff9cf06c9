package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/kbootstrap/kbootstrap/internal/atomicfile"
)

// Local is the machine kbootstrap runs on (--local, e.g. from cron on a
// control plane).
type Local struct {
	name   string
	logger *slog.Logger
}

var _ Node = (*Local)(nil)

// NewLocal returns the local machine as a Node called name. A nil logger
// discards logs.
func NewLocal(name string, logger *slog.Logger) *Local {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Local{name: name, logger: logger}
}

// Name implements Node.
func (l *Local) Name() string { return l.name }

// Privileged implements Node: true when running as root.
func (l *Local) Privileged() bool { return os.Geteuid() == 0 }

// Run implements Runner with sh -c.
func (l *Local) Run(ctx context.Context, cmd string, opts ...ExecOption) (Result, error) {
	o := Apply(opts)
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	stdout, stderr := &cappedBuffer{over: cancelRun}, &cappedBuffer{over: cancelRun}
	c := exec.CommandContext(runCtx, "/bin/sh", "-c", cmd)
	// The command leads a session of its own, and a cancel kills the whole
	// session (kill.go): killing /bin/sh alone left its children running.
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	c.Cancel = func() error {
		script := killSessionScript(c.Process.Pid)
		if o.sudo {
			script = sudoCmd(script)
		}
		kctx, cancel := context.WithTimeout(context.Background(), killTimeout)
		defer cancel()
		if err := exec.CommandContext(kctx, "/bin/sh", "-c", script).Run(); err != nil {
			l.logger.Warn("ending a cancelled command", "cmd", loggedCmd(cmd, o), "err", err)
		}
		if err := c.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return err
		}
		return nil
	}
	// A child that keeps the output pipes open must not hold Run past ctx.
	c.WaitDelay = 2 * time.Second
	c.Stdin = o.Stdin
	c.Stdout = teeWriter(stdout, o.Stdout)
	c.Stderr = teeWriter(stderr, o.Stderr)
	logged := loggedCmd(cmd, o)
	l.logger.Debug("run", "node", l.name, "cmd", logged)
	err := c.Run()
	res := Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	if err := outputError(logged, stdout, stderr); err != nil && ctx.Err() == nil {
		return res, err
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ctx.Err() == nil {
		res.ExitCode = ee.ExitCode()
		return res, &ExitError{Node: l.name, Cmd: logged, ExitCode: res.ExitCode, Stderr: loggedOutput(res.Stderr, o)}
	}
	if err != nil {
		return res, fmt.Errorf("run %q: %w", logged, err)
	}
	return res, nil
}

// ReadFile implements Files. The file is opened non-blocking, so a named
// pipe is refused instead of waited on.
func (l *Local) ReadFile(_ context.Context, path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, &os.PathError{Op: "read", Path: path, Err: ErrNotRegular}
	}
	b, err := readBounded(f)
	if err != nil {
		return nil, &os.PathError{Op: "read", Path: path, Err: err}
	}
	return b, nil
}

// Stat implements Files (without following a final symlink).
func (l *Local) Stat(_ context.Context, path string) (FileInfo, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return FileInfo{}, err
	}
	return localInfo(fi), nil
}

// ReadDir implements Files.
func (l *Local) ReadDir(_ context.Context, dir string) ([]FileInfo, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := make([]FileInfo, 0, len(entries))
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			return nil, err
		}
		out = append(out, localInfo(fi))
	}
	return out, nil
}

func localInfo(fi os.FileInfo) FileInfo {
	info := FileInfo{Name: fi.Name(), Size: fi.Size(), Mode: fi.Mode(), ModTime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		info.UID, info.GID = int(st.Uid), int(st.Gid)
	}
	return info
}

// WriteFile implements Files: atomicfile's temporary file in the same
// directory, mode and owner set before the first byte, fsync, rename, fsync
// of the directory.
func (l *Local) WriteFile(_ context.Context, path string, r io.Reader, opts WriteOptions) error {
	return atomicfile.Write(path, r, atomicfile.Options{Mode: opts.Mode, Chown: opts.Chown, UID: opts.UID, GID: opts.GID})
}

// Remove implements Files.
func (l *Local) Remove(_ context.Context, path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Dial implements Dialer.
func (l *Local) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func teeWriter(buf io.Writer, w io.Writer) io.Writer {
	if w == nil {
		return buf
	}
	return io.MultiWriter(buf, w)
}

// cappedBuffer keeps at most MaxReadSize bytes of a command's output; at the
// first byte beyond, it calls over (which ends the command) and drops the
// rest, so a command that prints without end cannot exhaust memory.
type cappedBuffer struct {
	buf      bytes.Buffer
	over     func()
	exceeded bool
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	if c.exceeded {
		return len(p), nil
	}
	if room := MaxReadSize - c.buf.Len(); len(p) > room {
		c.buf.Write(p[:room])
		c.exceeded = true
		c.over()
		return len(p), nil
	}
	return c.buf.Write(p)
}

func (c *cappedBuffer) Bytes() []byte { return c.buf.Bytes() }

// outputError is the error of a command whose stdout or stderr outgrew
// MaxReadSize.
func outputError(logged string, stdout, stderr *cappedBuffer) error {
	for _, c := range []struct {
		name string
		b    *cappedBuffer
	}{{"stdout", stdout}, {"stderr", stderr}} {
		if c.b.exceeded {
			return fmt.Errorf("run %q: its %s is %w (the command was ended)", logged, c.name, ErrTooLarge)
		}
	}
	return nil
}
