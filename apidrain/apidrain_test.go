package apidrain

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/node"
)

func TestParseStat(t *testing.T) {
	// What haproxy 2.6 (Debian bookworm) answers, cp2 drained with a
	// failing check.
	out, err := os.ReadFile("testdata/show-stat-haproxy-2.6.txt")
	if err != nil {
		t.Fatal(err)
	}
	st, err := parseStat(string(out), Backend, "cp2")
	if err != nil || st.Status != "DOWN" || st.Sessions != 0 {
		t.Errorf("cp2: %+v, %v", st, err)
	}
	if _, err := parseStat(string(out), Backend, "cp9"); err == nil || !strings.Contains(err.Error(), "no server cp9 in backend control-planes") {
		t.Errorf("cp9: %v", err)
	}
	if _, err := parseStat(string(out), "other", "cp1"); err == nil {
		t.Error("a server of another backend was found")
	}
	for _, bad := range []string{"", "# pxname,svname\n", "# pxname,svname,scur,status\ncontrol-planes,cp1,x,UP\n"} {
		if _, err := parseStat(bad, Backend, "cp1"); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// fakeHAProxy is a load balancer node whose haproxy's runtime API holds
// servers' states, answering show stat as haproxy does.
type fakeHAProxy struct {
	name    string
	noAPI   bool
	mu      sync.Mutex
	cmds    []string
	state   map[string]string // server → UP, DRAIN, MAINT, DOWN
	scur    map[string]int
	onStat  func(f *fakeHAProxy) // called at each show stat (under mu)
	readyUp bool                 // a server set ready is UP (its check passes)
}

func (f *fakeHAProxy) Name() string     { return f.name }
func (f *fakeHAProxy) Privileged() bool { return true }

func (f *fakeHAProxy) Run(ctx context.Context, cmd string, opts ...node.ExecOption) (node.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if strings.HasPrefix(cmd, "[ -S ") {
		if f.noAPI {
			return node.Result{Stdout: []byte("no\n")}, nil
		}
		return node.Result{Stdout: []byte("yes\n")}, nil
	}
	if !strings.HasPrefix(cmd, "socat ") {
		return node.Result{}, fmt.Errorf("unexpected command %q", cmd)
	}
	in, _ := io.ReadAll(node.Apply(opts).Stdin)
	rc := strings.TrimSpace(string(in))
	f.cmds = append(f.cmds, rc)
	if rc == "show stat" {
		if f.onStat != nil {
			f.onStat(f)
		}
		var b strings.Builder
		b.WriteString("# pxname,svname,qcur,qmax,scur,smax,status\n")
		for _, s := range []string{"cp1", "cp2"} {
			fmt.Fprintf(&b, "control-planes,%s,0,0,%d,0,%s\n", s, f.scur[s], f.state[s])
		}
		return node.Result{Stdout: []byte(b.String())}, nil
	}
	var srv, st string
	if _, err := fmt.Sscanf(rc, "set server control-planes/%s state %s", &srv, &st); err == nil {
		if _, ok := f.state[srv]; !ok {
			return node.Result{Stdout: []byte("No such server.\n\n")}, nil
		}
		switch st {
		case "drain":
			f.state[srv] = "DRAIN"
		case "maint":
			f.state[srv] = "MAINT"
		case "ready":
			f.state[srv] = "DOWN"
			if f.readyUp {
				f.state[srv] = "UP"
			}
		}
		return node.Result{Stdout: []byte("\n")}, nil
	}
	if strings.HasPrefix(rc, "shutdown sessions server control-planes/") {
		f.scur[strings.TrimPrefix(rc, "shutdown sessions server control-planes/")] = 0
		return node.Result{Stdout: []byte("\n")}, nil
	}
	return node.Result{Stdout: []byte("Unknown command.\n")}, nil
}

func (f *fakeHAProxy) ReadFile(context.Context, string) ([]byte, error) {
	return nil, errors.ErrUnsupported
}
func (f *fakeHAProxy) Stat(context.Context, string) (node.FileInfo, error) {
	return node.FileInfo{}, errors.ErrUnsupported
}
func (f *fakeHAProxy) ReadDir(context.Context, string) ([]node.FileInfo, error) {
	return nil, errors.ErrUnsupported
}
func (f *fakeHAProxy) WriteFile(context.Context, string, io.Reader, node.WriteOptions) error {
	return errors.ErrUnsupported
}
func (f *fakeHAProxy) Remove(context.Context, string) error { return errors.ErrUnsupported }
func (f *fakeHAProxy) Dial(context.Context, string, string) (net.Conn, error) {
	return nil, errors.ErrUnsupported
}

type connector map[string]node.Node

func (c connector) Connect(_ context.Context, in inventory.Node) (node.Node, error) {
	if n, ok := c[in.Name]; ok {
		return n, nil
	}
	return nil, fmt.Errorf("node %s unreachable", in.Name)
}

func newLB(name string) *fakeHAProxy {
	return &fakeHAProxy{name: name, state: map[string]string{"cp1": "UP", "cp2": "UP"}, scur: map[string]int{"cp1": 2, "cp2": 1}, readyUp: true}
}

func lbInventory(lbs ...string) *inventory.Inventory {
	inv := &inventory.Inventory{Nodes: []inventory.Node{{Name: "cp1", Address: "10.0.0.1", Role: inventory.RoleControlPlane}}}
	for i, lb := range lbs {
		inv.Nodes = append(inv.Nodes, inventory.Node{Name: lb, Address: fmt.Sprintf("10.0.0.%d", 100+i), Role: inventory.RoleLoadBalancer})
	}
	return inv
}

// TestHAProxyDrainAndUndrain: drain on every load balancer, a wait for the
// server's sessions to end, maint with the rest shut; ready again, and a
// wait until every haproxy sees it UP.
func TestHAProxyDrainAndUndrain(t *testing.T) {
	lb1, lb2 := newLB("lb1"), newLB("lb2")
	// lb1's sessions to cp1 end by themselves after two looks.
	stats := 0
	lb1.onStat = func(f *fakeHAProxy) {
		if stats++; stats >= 2 {
			f.scur["cp1"] = 0
		}
	}
	// lb2 keeps one session open (a watch): cut after the wait.
	lb2.scur["cp1"] = 1
	ctx := context.Background()
	d, err := For(ctx, Options{Inventory: lbInventory("lb1", "lb2"), Connector: connector{"lb1": lb1, "lb2": lb2}, Name: "cp1", DrainWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if d.Method() != "haproxy's runtime API on lb1, lb2" {
		t.Errorf("method %q", d.Method())
	}
	start := time.Now()
	if err := d.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("drain did not wait for lb2's open session (%s)", took)
	}
	for _, lb := range []*fakeHAProxy{lb1, lb2} {
		if lb.state["cp1"] != "MAINT" || lb.scur["cp1"] != 0 || lb.state["cp2"] != "UP" {
			t.Errorf("%s after drain: %v %v", lb.name, lb.state, lb.scur)
		}
		want := []string{"set server control-planes/cp1 state drain", "set server control-planes/cp1 state maint", "shutdown sessions server control-planes/cp1"}
		var got []string
		for _, c := range lb.cmds {
			if c != "show stat" {
				got = append(got, c)
			}
		}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%s: commands %q, want %q", lb.name, got, want)
		}
		lb.cmds = nil
	}
	if err := d.Undrain(ctx); err != nil {
		t.Fatal(err)
	}
	for _, lb := range []*fakeHAProxy{lb1, lb2} {
		if lb.state["cp1"] != "UP" || lb.cmds[0] != "set server control-planes/cp1 state ready" {
			t.Errorf("%s after undrain: %v %q", lb.name, lb.state, lb.cmds)
		}
	}
}

// TestHAProxyUndrainWaitsForUP: a server whose check keeps failing is an
// error naming the load balancer and what it sees.
func TestHAProxyUndrainWaitsForUP(t *testing.T) {
	lb1 := newLB("lb1")
	lb1.readyUp = false
	d, err := For(context.Background(), Options{Inventory: lbInventory("lb1"), Connector: connector{"lb1": lb1}, Name: "cp1", ReadyWait: 700 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	err = d.Undrain(context.Background())
	if err == nil || !strings.Contains(err.Error(), "haproxy on lb1 sees cp1 DOWN") {
		t.Errorf("undrain of a server that stays down: %v", err)
	}
	// Once its check passes, it is UP.
	lb1.mu.Lock()
	lb1.readyUp = true
	lb1.mu.Unlock()
	if err := d.Undrain(context.Background()); err != nil {
		t.Error(err)
	}
}

// TestForFallsBackToTheNode: without a load balancer kbootstrap manages, the
// node method, and why.
func TestForFallsBackToTheNode(t *testing.T) {
	ctx := context.Background()
	noAPI := newLB("lb1")
	noAPI.noAPI = true
	for _, tc := range []struct {
		name string
		o    Options
		why  error
		msg  string
	}{
		{"no inventory (a run on the node)", Options{}, ErrNoLoadBalancer, ""},
		{"no load balancer", Options{Inventory: lbInventory(), Connector: connector{}}, ErrNoLoadBalancer, ""},
		{"haproxy without the runtime API", Options{Inventory: lbInventory("lb1"), Connector: connector{"lb1": noAPI}}, ErrNotManaged, "load balancer lb1"},
		{"a server haproxy does not know", Options{Inventory: lbInventory("lb1"), Connector: connector{"lb1": newLB("lb1")}, Name: "cp9"}, nil, "load balancer lb1: haproxy on lb1: no server cp9 in backend control-planes"},
		{"an unreachable load balancer", Options{Inventory: lbInventory("lb1"), Connector: connector{}}, nil, "node lb1 unreachable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.o.Name == "" {
				tc.o.Name = "cp1"
			}
			tc.o.Node = &fakeHAProxy{name: "cp1"}
			d, why := For(ctx, tc.o)
			if _, ok := d.(*nodeDrainer); !ok {
				t.Errorf("drainer %T, want the node's", d)
			}
			if why == nil || (tc.why != nil && !errors.Is(why, tc.why)) || !strings.Contains(why.Error(), tc.msg) {
				t.Errorf("why: %v, want %v %q", why, tc.why, tc.msg)
			}
		})
	}
}
