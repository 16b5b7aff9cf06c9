package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// SSHNode is a node reached over one SSH connection: every command, the SFTP
// session and every tunnel of the run share it.
type SSHNode struct {
	name     string
	user     string
	client   *ssh.Client
	logger   *slog.Logger
	redactor *Redactor
	sessions chan struct{} // bounds concurrent sessions (sshd's MaxSessions)

	sftpMu sync.Mutex
	sftp   *sftp.Client
}

var _ Node = (*SSHNode)(nil)

func newSSHNode(name, user string, client *ssh.Client, opts PoolOptions) *SSHNode {
	return &SSHNode{
		name:     name,
		user:     user,
		client:   client,
		logger:   opts.Logger.With("node", name),
		redactor: opts.Redactor,
		sessions: make(chan struct{}, opts.MaxSessions),
	}
}

// Name implements Node.
func (n *SSHNode) Name() string { return n.name }

// Privileged implements Node: true when the SSH user is root.
func (n *SSHNode) Privileged() bool { return n.user == "root" }

// Close closes the SFTP session and the connection.
func (n *SSHNode) Close() error {
	n.sftpMu.Lock()
	if n.sftp != nil {
		n.sftp.Close()
	}
	n.sftpMu.Unlock()
	return n.client.Close()
}

// cancelGrace is how long a cancelled command's session may take to end.
const cancelGrace = 5 * time.Second

// Run implements Runner.
func (n *SSHNode) Run(ctx context.Context, cmd string, opts ...ExecOption) (Result, error) {
	o := Apply(opts)
	logged := loggedCmd(cmd, o)
	if n.redactor != nil {
		logged = n.redactor.String(logged)
	}
	select {
	case n.sessions <- struct{}{}:
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
	defer func() { <-n.sessions }()
	sess, err := n.client.NewSession()
	if err != nil {
		return Result{}, fmt.Errorf("run %q: new session: %w", logged, err)
	}
	defer sess.Close()
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	stdout, stderr := &cappedBuffer{over: cancelRun}, &cappedBuffer{over: cancelRun}
	sess.Stdout = teeWriter(stdout, o.Stdout)
	sess.Stderr = teeWriter(stderr, o.Stderr)
	if o.Stdin != nil {
		sess.Stdin = o.Stdin
	}
	n.logger.Debug("run", "cmd", logged)
	token := newRunToken()
	if err := sess.Start(markedCmd(cmd, token)); err != nil {
		return Result{}, fmt.Errorf("run %q: %w", logged, err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err = <-done:
	case <-runCtx.Done():
		// The command's whole session is killed from a second session
		// (kill.go); the signal and closing the channel are what is left
		// when that fails.
		if err := n.killMarked(token, o.sudo); err != nil {
			n.logger.Warn("ending a cancelled command", "cmd", logged, "err", err)
		}
		sess.Signal(ssh.SIGKILL)
		sess.Close()
		// sshd keeps the channel open until the command ends: do not wait
		// for a command that could not be killed.
		cause := fmt.Errorf("run %q: %w", logged, ctx.Err())
		select {
		case <-done:
			res := Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
			if err := outputError(logged, stdout, stderr); err != nil && ctx.Err() == nil {
				cause = err
			}
			return res, cause
		case <-time.After(cancelGrace):
			if ctx.Err() == nil {
				cause = fmt.Errorf("run %q: its output is %w", logged, ErrTooLarge)
			}
			return Result{}, fmt.Errorf("%w (the command may still run on %s)", cause, n.name)
		}
	}
	res := Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	var ee *ssh.ExitError
	switch {
	case err == nil:
		return res, nil
	case errors.As(err, &ee):
		res.ExitCode = ee.ExitStatus()
		errOut := loggedOutput(res.Stderr, o)
		if n.redactor != nil {
			errOut = n.redactor.String(errOut)
		}
		return res, &ExitError{Node: n.name, Cmd: logged, ExitCode: res.ExitCode, Stderr: errOut}
	default:
		return res, fmt.Errorf("run %q: %w", logged, err)
	}
}

// sftpClient opens the connection's SFTP session on first use.
func (n *SSHNode) sftpClient() (*sftp.Client, error) {
	n.sftpMu.Lock()
	defer n.sftpMu.Unlock()
	if n.sftp != nil {
		return n.sftp, nil
	}
	c, err := sftp.NewClient(n.client, sftp.UseConcurrentWrites(true))
	if err != nil {
		return nil, fmt.Errorf("sftp: %w", err)
	}
	n.sftp = c
	return c, nil
}

// ReadFile implements Files over SFTP (as the SSH user): readSFTP.
func (n *SSHNode) ReadFile(ctx context.Context, p string) ([]byte, error) {
	c, err := n.sftpClient()
	if err != nil {
		return nil, err
	}
	return readSFTP(ctx, c, p)
}

// readSFTP reads p, a regular file of at most MaxReadSize bytes. It stats
// first (following symlinks): opening a named pipe would block the SFTP
// server.
func readSFTP(ctx context.Context, c *sftp.Client, p string) ([]byte, error) {
	if fi, err := c.Stat(p); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, &os.PathError{Op: "read", Path: p, Err: ErrNotRegular}
	}
	f, err := c.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Closing the file unblocks a read stuck on a dead connection.
	stop := context.AfterFunc(ctx, func() { f.Close() })
	defer stop()
	b, err := readBounded(f)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, &os.PathError{Op: "read", Path: p, Err: err}
	}
	return b, nil
}

// Stat implements Files over SFTP.
func (n *SSHNode) Stat(ctx context.Context, p string) (FileInfo, error) {
	c, err := n.sftpClient()
	if err != nil {
		return FileInfo{}, err
	}
	fi, err := c.Lstat(p)
	if err != nil {
		return FileInfo{}, err
	}
	return sftpInfo(fi), nil
}

// ReadDir implements Files over SFTP.
func (n *SSHNode) ReadDir(ctx context.Context, dir string) ([]FileInfo, error) {
	c, err := n.sftpClient()
	if err != nil {
		return nil, err
	}
	entries, err := c.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := make([]FileInfo, len(entries))
	for i, fi := range entries {
		out[i] = sftpInfo(fi)
	}
	return out, nil
}

func sftpInfo(fi os.FileInfo) FileInfo {
	info := FileInfo{Name: fi.Name(), Size: fi.Size(), Mode: fi.Mode(), ModTime: fi.ModTime()}
	if st, ok := fi.Sys().(*sftp.FileStat); ok {
		info.UID, info.GID = int(st.UID), int(st.GID)
	}
	return info
}

// WriteFile implements Files over SFTP (writeSFTP), then syncs p's
// directory so that the rename survives a crash.
func (n *SSHNode) WriteFile(ctx context.Context, p string, r io.Reader, opts WriteOptions) error {
	c, err := n.sftpClient()
	if err != nil {
		return err
	}
	if err := writeSFTP(ctx, c, p, r, opts); err != nil {
		return err
	}
	dir := path.Dir(p)
	_, _ = n.Run(ctx, "sync -- "+ShellQuote(dir)+" 2>/dev/null || true", HideOutput())
	return nil
}

// writeSFTP writes p atomically: a private directory (0700) next to p, the
// file created in it (exclusively, so no other user can open it even before
// its mode is set), its mode and owner set before any byte, fsync, an atomic
// posix-rename over p, the directory removed.
func writeSFTP(ctx context.Context, c *sftp.Client, p string, r io.Reader, opts WriteOptions) (err error) {
	mode := opts.Mode
	if mode == 0 {
		mode = 0o644
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	dir, base := path.Split(p)
	priv := path.Join(dir, "."+base+".kbtmp-"+hex.EncodeToString(rnd[:]))
	if err := c.Mkdir(priv); err != nil {
		return &os.PathError{Op: "write", Path: p, Err: err}
	}
	defer c.RemoveDirectory(priv)
	if err := c.Chmod(priv, 0o700); err != nil {
		return &os.PathError{Op: "chmod", Path: priv, Err: err}
	}
	tmp := path.Join(priv, base)
	f, err := c.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return &os.PathError{Op: "write", Path: p, Err: err}
	}
	defer func() {
		if err != nil {
			f.Close()
			c.Remove(tmp)
		}
	}()
	if err = f.Chmod(mode.Perm()); err != nil {
		return &os.PathError{Op: "chmod", Path: tmp, Err: err}
	}
	if opts.Chown {
		if err = f.Chown(opts.UID, opts.GID); err != nil {
			return &os.PathError{Op: "chown", Path: tmp, Err: err}
		}
	}
	stop := context.AfterFunc(ctx, func() { f.Close() })
	_, err = f.ReadFrom(r)
	stop()
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return &os.PathError{Op: "write", Path: tmp, Err: err}
	}
	if err = f.Sync(); err != nil && !isUnsupported(err) {
		return &os.PathError{Op: "fsync", Path: tmp, Err: err}
	}
	if err = f.Close(); err != nil {
		return &os.PathError{Op: "close", Path: tmp, Err: err}
	}
	if err = c.PosixRename(tmp, p); err != nil {
		return &os.PathError{Op: "rename", Path: p, Err: err}
	}
	return nil
}

func isUnsupported(err error) bool {
	var se *sftp.StatusError
	return errors.As(err, &se) && se.FxCode() == sftp.ErrSSHFxOpUnsupported
}

// Remove implements Files over SFTP.
func (n *SSHNode) Remove(ctx context.Context, p string) error {
	c, err := n.sftpClient()
	if err != nil {
		return err
	}
	if err := c.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Dial implements Dialer: a direct-tcpip channel of the node's connection.
func (n *SSHNode) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := n.client.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s through ssh: %w", addr, err)
	}
	return conn, nil
}
