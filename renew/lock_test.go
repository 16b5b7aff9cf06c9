package renew

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kbootstrap/kbootstrap/node"
)

// TestStaleLockTakeoverHasOneWinner: runs that find the same stale lock at
// once race to take it over; exactly one wins, every other is told the node
// is locked (security review, finding 5).
func TestStaleLockTakeoverHasOneWinner(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("needs /bin/sh")
	}
	dir := t.TempDir()
	o := Options{StaleAfter: time.Minute, lockFile: filepath.Join(dir, "state", "certs-renew.lock")}.withDefaults()
	const rounds, runs = 25, 6
	for round := 0; round < rounds; round++ {
		os.MkdirAll(filepath.Dir(o.lockFile), 0o700)
		stale := lockLine("deadbeef", time.Now().Add(-10*time.Minute))
		if err := os.WriteFile(o.lockFile, []byte(stale), 0o600); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var won []*lock
		locked := 0
		start := make(chan struct{})
		for i := 0; i < runs; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				l, err := o.lock(context.Background(), &target{name: "cp1", n: node.NewLocal("cp1", nil)})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					won = append(won, l)
				case errors.Is(err, ErrLocked):
					locked++
				default:
					t.Errorf("round %d: %v", round, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if len(won) != 1 || locked != runs-1 {
			t.Fatalf("round %d: %d runs took over the stale lock, %d were refused; want 1 and %d", round, len(won), locked, runs-1)
		}
		won[0].release()
		if _, err := os.Stat(o.lockFile); !os.IsNotExist(err) {
			t.Fatalf("round %d: the lock is still there after release: %v", round, err)
		}
	}
}

// TestLostLockStopsTheRun: a run whose lock was taken from it (its
// heartbeat finds another id) stops before its next change.
func TestLostLockStopsTheRun(t *testing.T) {
	dir := t.TempDir()
	o := Options{StaleAfter: 400 * time.Millisecond, lockFile: filepath.Join(dir, "certs-renew.lock")}.withDefaults()
	l, err := o.lock(context.Background(), &target{name: "cp1", n: node.NewLocal("cp1", nil)})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.held(context.Background()); err != nil {
		t.Fatalf("a fresh lock: %v", err)
	}
	if err := os.WriteFile(o.lockFile, []byte(lockLine("0123456789abcdef", time.Now())), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := l.held(context.Background()); !errors.Is(err, ErrLockLost) {
		t.Fatalf("held() = %v after another run took the lock, want ErrLockLost", err)
	}
	l.release()
	if b, _ := os.ReadFile(o.lockFile); !strings.Contains(string(b), "id=0123456789abcdef ") {
		t.Errorf("releasing a lost lock removed the other run's: %q", b)
	}
}
