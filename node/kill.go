package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"
)

// A cancelled command must not outlive kbootstrap on the node. sshd runs
// each command as the leader of a new session (setsid), but the "signal"
// request it offers reaches only the SSH user's processes, and sudo moves
// the root command into a process group of its own: a root child under sudo
// runs on after the channel closes (sleep 600 did, for 600 s). So every
// command is marked, and a cancelled one is ended by a second command that
// kills every process of the marked command's session, through sudo when
// the command went through sudo.

// runMarker names the session leader of a command: its $0.
const runMarker = "kbrun-"

// killTimeout bounds the command that ends a cancelled one.
const killTimeout = 10 * time.Second

// newRunToken returns a random token that marks one command.
func newRunToken() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// markedCmd wraps cmd so that the session leader is `sh -c CMD kbrun-TOKEN`
// for the command's whole life: the trailing `exit $?` keeps the shell from
// exec'ing the last command of cmd in its own place (dash does), which
// would lose the mark.
func markedCmd(cmd, token string) string {
	return "exec sh -c " + ShellQuote(cmd+"\nexit $?") + " " + runMarker + token
}

// killSession is shell that kills every process of session $s (the
// session field of /proc/PID/stat, after the command name).
const killSession = `for d in /proc/[0-9]*; do
    read -r l < "$d/stat" || continue
    set -- ${l##*) }
    [ "$4" = "$s" ] && kill -KILL "${d#/proc/}"
  done`

// killScript kills every process in the session whose leader carries token.
// Its own command line names the token only as a bracket pattern, so it never
// matches itself.
func killScript(token string) string {
	pattern := runMarker + token[:len(token)-1] + "[" + token[len(token)-1:] + "]"
	return `{ for f in $(grep -la -e '` + pattern + `' /proc/[0-9]*/cmdline); do
  s=${f#/proc/}; s=${s%/cmdline}
  ` + killSession + `
done; } 2>/dev/null; true`
}

// killSessionScript kills every process of session sid.
func killSessionScript(sid int) string {
	return fmt.Sprintf("{ s=%d; %s; } 2>/dev/null; true", sid, killSession)
}

// killMarked runs killScript on the connection in a session of its own (not
// counted against the run's bound: the cancelled command still holds its
// slot), through sudo when the command went through sudo.
func (n *SSHNode) killMarked(token string, sudo bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
	defer cancel()
	sess, err := n.client.NewSession()
	if err != nil {
		return fmt.Errorf("new session: %w", err)
	}
	defer sess.Close()
	script := killScript(token)
	if sudo {
		script = sudoCmd(script)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Run(script) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		sess.Signal(ssh.SIGKILL)
		return ctx.Err()
	}
}
