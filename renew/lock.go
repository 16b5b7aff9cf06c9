package renew

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/kbootstrap/kbootstrap/node"
)

// lock is a renewal's hold on a node: a file with an id and a heartbeat.
type lock struct {
	n    node.Node
	id   string
	stop chan struct{}
	done chan struct{}
}

func lockLine(id string, now time.Time) string {
	return fmt.Sprintf("kbootstrap-certs-renew id=%s host=%s pid=%d heartbeat=%d\n", id, hostname(), os.Getpid(), now.Unix())
}

// lock takes the node's lock, or takes over a stale one (and says so).
func (o Options) lock(ctx context.Context, t *target) (*lock, error) {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	l := &lock{n: t.n, id: hex.EncodeToString(b), stop: make(chan struct{}), done: make(chan struct{})}
	line := lockLine(l.id, o.Now())
	cmd := fmt.Sprintf("mkdir -p %s && chmod 700 %s && (set -C; printf %%s %s > %s) 2>/dev/null", StateDir, StateDir, node.ShellQuote(line), LockFile)
	if _, err := t.n.Run(ctx, cmd); err != nil {
		var ee *node.ExitError
		if !errors.As(err, &ee) {
			return nil, fmt.Errorf("lock %s: %w", LockFile, err)
		}
		held, rerr := t.n.ReadFile(ctx, LockFile)
		if rerr != nil {
			return nil, fmt.Errorf("lock %s: %w", LockFile, rerr)
		}
		hb := heartbeat(string(held))
		age := o.Now().Sub(hb)
		if !hb.IsZero() && age < o.StaleAfter {
			return nil, fmt.Errorf("%w (%s, heartbeat %s ago): not overlapping it", ErrLocked, strings.TrimSpace(string(held)), age.Round(time.Second))
		}
		if err := t.n.WriteFile(ctx, LockFile, strings.NewReader(line), node.WriteOptions{Mode: 0o600}); err != nil {
			return nil, fmt.Errorf("taking over %s: %w", LockFile, err)
		}
		o.Status.Printf("%s: took over a stale lock (%s, last heartbeat %s ago, older than %s): its run is dead",
			t.name, strings.TrimSpace(string(held)), age.Round(time.Second), o.StaleAfter)
	}
	go func() {
		defer close(l.done)
		tick := time.NewTicker(o.StaleAfter / 4)
		defer tick.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
				hctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, _ = l.n.Run(hctx, fmt.Sprintf("grep -q 'id=%s ' %s && printf %%s %s > %s.tmp && mv -f %s.tmp %s",
					l.id, LockFile, node.ShellQuote(lockLine(l.id, time.Now())), LockFile, LockFile, LockFile))
				cancel()
			}
		}
	}()
	return l, nil
}

func (l *lock) release() {
	close(l.stop)
	<-l.done
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = l.n.Run(ctx, fmt.Sprintf("grep -q 'id=%s ' %s && rm -f %s", l.id, LockFile, LockFile))
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

// unlock releases the lock when the run holds it.
func (r *nodeRun) unlock() {
	if r.lock != nil {
		r.lock.release()
	}
}
