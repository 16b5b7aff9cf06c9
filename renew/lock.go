package renew

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kbootstrap/kbootstrap/node"
)

// lock is a renewal's hold on a node: a file with an id and a heartbeat.
// Every operation on it (take, take over, heartbeat, check, release) runs on
// the node under flock(1) on the file's guard, so reading, judging and
// writing it are one step: of runs that find the same stale lock, exactly
// one takes it over.
type lock struct {
	n    node.Node
	path string
	id   string
	lost atomic.Bool
	stop chan struct{}
	done chan struct{}
}

// ErrLockLost is returned when another run took a run's lock (it judged the
// run dead): the run stops before its next change.
var ErrLockLost = errors.New("this run's lock was taken over by another run")

func lockLine(id string, now time.Time) string {
	return fmt.Sprintf("kbootstrap-certs-renew id=%s host=%s pid=%d heartbeat=%d\n", id, hostname(), os.Getpid(), now.Unix())
}

// lockPath is the node's lock file.
func (o Options) lockPath() string {
	if o.lockFile != "" {
		return o.lockFile
	}
	return LockFile
}

// Exit codes of the lock scripts.
const (
	lockHeld = 3 // the lock is someone else's (its line on stdout)
	lockLost = 4 // the lock is no longer this run's
)

// guarded runs script under an exclusive flock on path's guard file, in
// path's directory (made 0700).
func guarded(path, script string) string {
	dir := filepath.Dir(path)
	return fmt.Sprintf("mkdir -p %[1]s && chmod 700 %[1]s && exec 9>%[2]s && flock -w 60 9 && {\n%[3]s\n}",
		node.ShellQuote(dir), node.ShellQuote(path+".guard"), script)
}

// writeLine replaces path's content with line, atomically for readers
// outside the guard.
func writeLine(path, line string) string {
	return fmt.Sprintf("printf %%s %[1]s > %[2]s.tmp && mv -f %[2]s.tmp %[2]s", node.ShellQuote(line), node.ShellQuote(path))
}

// lock takes the node's lock, or takes over a stale one (and says so).
func (o Options) lock(ctx context.Context, t *target) (*lock, error) {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	p := o.lockPath()
	l := &lock{n: t.n, path: p, id: hex.EncodeToString(b), stop: make(chan struct{}), done: make(chan struct{})}
	line := lockLine(l.id, o.Now())
	q := node.ShellQuote(p)
	take := fmt.Sprintf("if [ -e %[1]s ]; then cat %[1]s; exit %[2]d; fi\n%[3]s", q, lockHeld, writeLine(p, line))
	res, err := t.n.Run(ctx, guarded(p, take))
	if err != nil {
		if !isExit(err, lockHeld) {
			return nil, fmt.Errorf("lock %s: %w", p, err)
		}
		held := string(res.Stdout)
		hb := heartbeat(held)
		age := o.Now().Sub(hb)
		if !hb.IsZero() && age < o.StaleAfter {
			return nil, fmt.Errorf("%w (%s, heartbeat %s ago): not overlapping it", ErrLocked, strings.TrimSpace(held), age.Round(time.Second))
		}
		// Take it over only if it still holds what was judged stale.
		cas := fmt.Sprintf("if [ \"$(cat %[1]s 2>/dev/null)\" != %[2]s ]; then cat %[1]s 2>/dev/null; exit %[3]d; fi\n%[4]s",
			q, node.ShellQuote(strings.TrimRight(held, "\n")), lockHeld, writeLine(p, line))
		res, err := t.n.Run(ctx, guarded(p, cas))
		if isExit(err, lockHeld) {
			return nil, fmt.Errorf("%w (%s): another run took the stale lock over first", ErrLocked, strings.TrimSpace(string(res.Stdout)))
		}
		if err != nil {
			return nil, fmt.Errorf("taking over %s: %w", p, err)
		}
		o.Status.Printf("%s: took over a stale lock (%s, last heartbeat %s ago, older than %s): its run is dead",
			t.name, strings.TrimSpace(held), age.Round(time.Second), o.StaleAfter)
	}
	go l.heartbeats(o.StaleAfter / 4)
	return l, nil
}

// mine is the script that exits lockLost unless the lock is still l's.
func (l *lock) mine() string {
	return fmt.Sprintf("grep -q %s %s 2>/dev/null || exit %d", node.ShellQuote("id="+l.id+" "), node.ShellQuote(l.path), lockLost)
}

// heartbeats refreshes the lock every interval until released; a lock
// found taken is marked lost.
func (l *lock) heartbeats(interval time.Duration) {
	defer close(l.done)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-tick.C:
			hctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_, err := l.n.Run(hctx, guarded(l.path, l.mine()+"\n"+writeLine(l.path, lockLine(l.id, time.Now()))))
			cancel()
			if isExit(err, lockLost) {
				l.lost.Store(true)
				return
			}
		}
	}
}

// held checks on the node that the lock is still this run's.
func (l *lock) held(ctx context.Context) error {
	if l.lost.Load() {
		return ErrLockLost
	}
	_, err := l.n.Run(ctx, guarded(l.path, l.mine()))
	if isExit(err, lockLost) {
		l.lost.Store(true)
		return ErrLockLost
	}
	if err != nil {
		return fmt.Errorf("checking the lock %s: %w", l.path, err)
	}
	return nil
}

// release removes the lock when it is still this run's.
func (l *lock) release() {
	close(l.stop)
	<-l.done
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = l.n.Run(ctx, guarded(l.path, l.mine()+"\nrm -f "+node.ShellQuote(l.path)))
}

// isExit reports whether err is a command's exit with code.
func isExit(err error, code int) bool {
	var ee *node.ExitError
	return errors.As(err, &ee) && ee.ExitCode == code
}

func heartbeat(line string) time.Time {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, "heartbeat="); ok {
			if s, err := strconv.ParseInt(v, 10, 64); err == nil {
				return time.Unix(s, 0)
			}
		}
	}
	return time.Time{}
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

// takeLock is the "lock" step.
func (r *nodeRun) takeLock(ctx context.Context) error {
	st := r.o.Status.Start(r.t.name + ": lock")
	l, err := r.o.lock(ctx, r.t)
	st.End(err)
	if err != nil {
		return fmt.Errorf("node %s: %w", r.t.name, err)
	}
	r.lock = l
	return nil
}

// unlock releases the locks the run holds, the cluster's first.
func (r *nodeRun) unlock() {
	if r.cluster != nil {
		r.cluster.release()
	}
	if r.lock != nil {
		r.lock.release()
	}
}
