package etcd

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kbootstrap/kbootstrap/node"
)

// TestHostHandOffLeadership forms a real cluster of three etcd members (plain
// http on loopback) and hands the leadership off the leader: a follower's
// client changes nothing, the leader's moves it to a healthy member, and a
// client of more than one endpoint is refused.
func TestHostHandOffLeadership(t *testing.T) {
	bin := hostBin(t)
	p := freeLoopbackPorts(t, 6)
	names := []string{"m1", "m2", "m3"}
	var initial []string
	for i, n := range names {
		initial = append(initial, fmt.Sprintf("%s=http://127.0.0.1:%s", n, p[2*i+1]))
	}
	clientURL := func(i int) string { return "http://127.0.0.1:" + p[2*i] }
	for i, n := range names {
		log := &syncBuffer{}
		cmd := exec.Command(filepath.Join(bin, "etcd"), "--name", n, "--data-dir", filepath.Join(t.TempDir(), n),
			"--listen-client-urls", clientURL(i), "--advertise-client-urls", clientURL(i),
			"--listen-peer-urls", "http://127.0.0.1:"+p[2*i+1], "--initial-advertise-peer-urls", "http://127.0.0.1:"+p[2*i+1],
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new")
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		t.Cleanup(func() {
			cmd.Process.Kill()
			<-done
			if t.Failed() {
				t.Logf("%s:\n%s", n, log.String())
			}
		})
	}
	ctx := context.Background()
	local := node.NewLocal("host", nil)
	clients := make([]*Client, len(names))
	for i := range names {
		c, err := NewClient(local, []string{clientURL(i)}, nil, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		clients[i] = c
	}
	leader := func() int {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			for i, c := range clients {
				if st := c.Status(ctx, clientURL(i)); st.Problem() == nil && st.Leader {
					return i
				}
			}
			if time.Now().After(deadline) {
				t.Fatal("no leader within 30 s")
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	// Every member answers before the hand-off is asked.
	for i, c := range clients {
		deadline := time.Now().Add(30 * time.Second)
		for c.Status(ctx, clientURL(i)).Problem() != nil {
			if time.Now().After(deadline) {
				t.Fatalf("member %s did not answer within 30 s", names[i])
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	l := leader()
	f := (l + 1) % len(names)
	if to, err := clients[f].HandOffLeadership(ctx); err != nil || to != nil {
		t.Errorf("hand-off through follower %s: %v, %v; want nothing done", names[f], to, err)
	}
	if got := leader(); got != l {
		t.Errorf("after a follower's hand-off the leader is %s, want %s still", names[got], names[l])
	}
	to, err := clients[l].HandOffLeadership(ctx)
	if err != nil || to == nil {
		t.Fatalf("hand-off through leader %s: %v, %v", names[l], to, err)
	}
	if to.Name == names[l] {
		t.Errorf("the leadership was handed to the leader itself, %s", to.Name)
	}
	if got := leader(); names[got] != to.Name {
		t.Errorf("after the hand-off the leader is %s, want %s", names[got], to.Name)
	}
	both, err := NewClient(local, []string{clientURL(0), clientURL(1)}, nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer both.Close()
	if _, err := both.HandOffLeadership(ctx); err == nil || !strings.Contains(err.Error(), "alone") {
		t.Errorf("hand-off through two endpoints: %v, want a refusal", err)
	}
}
