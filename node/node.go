package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"strings"
	"time"
)

// Runner starts a command on a node and waits for it.
//
// cmd is a shell command line run by the node's login shell (sh -c on the
// local implementation). A command that ran and exited non-zero returns a
// *ExitError carrying its exit code and (redacted) stderr; anything else
// (connection lost, context done) is returned wrapped as it came.
type Runner interface {
	Run(ctx context.Context, cmd string, opts ...ExecOption) (Result, error)
}

// Files reads and writes files on a node.
type Files interface {
	// ReadFile returns the whole content of path, a regular file (after
	// symlinks) of at most MaxReadSize bytes: else ErrNotRegular or
	// ErrTooLarge inside an *fs.PathError.
	ReadFile(ctx context.Context, path string) ([]byte, error)
	// Stat returns mode, owner, size and modification time of path (not
	// following a final symlink is not promised; kubeadm writes no links).
	Stat(ctx context.Context, path string) (FileInfo, error)
	// ReadDir lists a directory (names only are relative to dir).
	ReadDir(ctx context.Context, dir string) ([]FileInfo, error)
	// WriteFile writes r to path atomically: a temporary file in the same
	// directory, mode and owner set, fsync, then rename over path. An
	// interrupted write never leaves a partial file at path.
	WriteFile(ctx context.Context, path string, r io.Reader, opts WriteOptions) error
	// Remove removes a file or an empty directory; a missing path is no error.
	Remove(ctx context.Context, path string) error
}

// Dialer opens a TCP connection from the node's side of the network, e.g. to
// the node's 127.0.0.1:2379, without opening any port.
type Dialer interface {
	Dial(ctx context.Context, network, addr string) (net.Conn, error)
}

// Node is everything kbootstrap does on one machine.
type Node interface {
	Runner
	Files
	Dialer
	// Name is the inventory name, used to prefix output and errors.
	Name() string
	// Privileged reports whether commands and files already run as root
	// (the SSH user is root, or the node is wrapped by Sudo).
	Privileged() bool
}

// FileInfo describes a file on a node.
type FileInfo struct {
	Name    string // base name
	Size    int64
	Mode    fs.FileMode // permission bits plus type bits (fs.ModeDir, fs.ModeSymlink)
	UID     int
	GID     int
	ModTime time.Time
}

// IsDir reports whether the entry is a directory.
func (fi FileInfo) IsDir() bool { return fi.Mode.IsDir() }

// WriteOptions are the attributes of a file written by Files.WriteFile.
type WriteOptions struct {
	Mode fs.FileMode // permission bits; 0 means 0644
	// UID and GID set the owner when Chown is true (root only, or through Sudo).
	Chown    bool
	UID, GID int
}

// Result is what a command printed and how it exited.
type Result struct {
	Stdout   []byte
	Stderr   []byte
	ExitCode int
}

// ExecOption configures one Run.
type ExecOption func(*ExecOptions)

// ExecOptions is the resolved set of ExecOption; implementations of Runner
// call Apply to read it.
type ExecOptions struct {
	Stdin      io.Reader
	Stdout     io.Writer // streamed copy of stdout (in addition to Result.Stdout)
	Stderr     io.Writer // streamed copy of stderr
	HideOutput bool      // never log the output
	HideCmd    bool      // never log the command line (it carries a secret)
	Secrets    []string  // redacted from logs and errors
	// sudo: the command goes through sudo (set by Sudo's Run), so ending it
	// on cancel takes sudo too.
	sudo bool
}

// Apply resolves opts.
func Apply(opts []ExecOption) ExecOptions {
	var o ExecOptions
	for _, f := range opts {
		f(&o)
	}
	return o
}

// viaSudo marks a command that Sudo wrapped.
func viaSudo() ExecOption { return func(o *ExecOptions) { o.sudo = true } }

// Stdin feeds r to the command's standard input.
func Stdin(r io.Reader) ExecOption { return func(o *ExecOptions) { o.Stdin = r } }

// StdinString feeds s to the command's standard input.
func StdinString(s string) ExecOption { return Stdin(strings.NewReader(s)) }

// StreamStdout copies stdout to w as it arrives.
func StreamStdout(w io.Writer) ExecOption { return func(o *ExecOptions) { o.Stdout = w } }

// StreamStderr copies stderr to w as it arrives.
func StreamStderr(w io.Writer) ExecOption { return func(o *ExecOptions) { o.Stderr = w } }

// HideOutput keeps the command's output out of logs and errors.
func HideOutput() ExecOption { return func(o *ExecOptions) { o.HideOutput = true } }

// Sensitive keeps the command line itself out of logs and errors.
func Sensitive() ExecOption { return func(o *ExecOptions) { o.HideCmd = true } }

// Redact replaces each secret with [REDACTED] wherever the command line, its
// output or its error is logged or returned as text. The command on the wire
// is unchanged.
func Redact(secrets ...string) ExecOption {
	return func(o *ExecOptions) { o.Secrets = append(o.Secrets, secrets...) }
}

// ExitError is a command that ran and exited non-zero.
type ExitError struct {
	Node     string
	Cmd      string // as logged: redacted, or "[sensitive command]"
	ExitCode int
	Stderr   string // redacted; may be truncated in Error()
}

func (e *ExitError) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if len(msg) > 512 {
		msg = "..." + msg[len(msg)-512:]
	}
	s := fmt.Sprintf("command %q exited with status %d", e.Cmd, e.ExitCode)
	if msg != "" {
		s += ": " + msg
	}
	return s
}

// MaxReadSize bounds what ReadFile returns and what Run keeps of a
// command's stdout and of its stderr: kbootstrap reads certificates,
// kubeconfigs, manifests and command output, never bulk data, into memory
// (snapshots and uploads stream). A path such as /dev/zero named in a
// kubeconfig gets ErrTooLarge, not the workstation's memory.
const MaxReadSize = 32 << 20

// ErrTooLarge is a file or a command's output larger than MaxReadSize.
var ErrTooLarge = fmt.Errorf("larger than %d MiB, the most kbootstrap reads into memory", MaxReadSize>>20)

// ErrNotRegular is a ReadFile of something other than a regular file (a
// device, a named pipe, a directory), which kbootstrap never reads.
var ErrNotRegular = errors.New("not a regular file")

// readBounded reads r to its end, at most MaxReadSize bytes.
func readBounded(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxReadSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxReadSize {
		return nil, ErrTooLarge
	}
	return b, nil
}

// ErrSudoPassword is returned when sudo -n refuses because it would ask for a
// password.
var ErrSudoPassword = errors.New("sudo requires a password (kbootstrap runs sudo -n; give the user NOPASSWD sudo or connect as root)")

// ShellQuote quotes s for a POSIX shell.
func ShellQuote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_./=:,+@%", c)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// JoinArgs quotes each argument and joins them into one command line.
func JoinArgs(args ...string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = ShellQuote(a)
	}
	return strings.Join(q, " ")
}
