package apidrain

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/kbootstrap/kbootstrap/internal/poll"
	"github.com/kbootstrap/kbootstrap/node"
)

// Socket is the runtime API of kbootstrap's haproxy (root only) and Backend
// the backend of the control planes, as the loadbalancer playbook writes
// them.
const (
	Socket  = "/run/haproxy-kbootstrap.sock"
	Backend = "control-planes"
)

// haproxyLB is one load balancer's haproxy, reached as root.
type haproxyLB struct {
	name string
	n    node.Node
}

// runtime sends one command to the runtime API and returns its answer.
func (lb *haproxyLB) runtime(ctx context.Context, cmd string) (string, error) {
	res, err := lb.n.Run(ctx, "socat -t 10 stdio UNIX-CONNECT:"+Socket, node.StdinString(cmd+"\n"))
	if err != nil {
		return "", fmt.Errorf("haproxy on %s: %s: %w", lb.name, cmd, err)
	}
	return string(res.Stdout), nil
}

// set sends a command that answers nothing when it succeeds.
func (lb *haproxyLB) set(ctx context.Context, cmd string) error {
	out, err := lb.runtime(ctx, cmd)
	if err != nil {
		return err
	}
	if out = strings.TrimSpace(out); out != "" {
		return fmt.Errorf("haproxy on %s: %s: %s", lb.name, cmd, out)
	}
	return nil
}

// serverStat is a server's line of `show stat`.
type serverStat struct {
	Sessions int    // scur: its open sessions
	Status   string // UP, DOWN, DRAIN, MAINT, "UP 1/2"...
}

// stat returns the server's line of `show stat`.
func (lb *haproxyLB) stat(ctx context.Context, server string) (serverStat, error) {
	out, err := lb.runtime(ctx, "show stat")
	if err != nil {
		return serverStat{}, err
	}
	st, err := parseStat(out, Backend, server)
	if err != nil {
		return serverStat{}, fmt.Errorf("haproxy on %s: %w", lb.name, err)
	}
	return st, nil
}

// parseStat finds server of backend in `show stat` (CSV, its header line
// starting "# ").
func parseStat(out, backend, server string) (serverStat, error) {
	r := csv.NewReader(strings.NewReader(strings.TrimPrefix(out, "# ")))
	r.FieldsPerRecord = -1
	header, err := r.Read()
	if err != nil {
		return serverStat{}, fmt.Errorf("show stat: no header: %w", err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[h] = i
	}
	for _, name := range []string{"pxname", "svname", "scur", "status"} {
		if _, ok := col[name]; !ok {
			return serverStat{}, fmt.Errorf("show stat: no %s column", name)
		}
	}
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return serverStat{}, fmt.Errorf("no server %s in backend %s", server, backend)
		}
		if err != nil {
			return serverStat{}, fmt.Errorf("show stat: %w", err)
		}
		if len(rec) <= max(col["pxname"], col["svname"], col["scur"], col["status"]) || rec[col["pxname"]] != backend || rec[col["svname"]] != server {
			continue
		}
		scur, err := strconv.Atoi(rec[col["scur"]])
		if err != nil {
			return serverStat{}, fmt.Errorf("show stat: %s/%s: scur %q", backend, server, rec[col["scur"]])
		}
		return serverStat{Sessions: scur, Status: rec[col["status"]]}, nil
	}
}

// probe checks that the runtime API answers and knows server.
func (lb *haproxyLB) probe(ctx context.Context, server string) error {
	res, err := lb.n.Run(ctx, "[ -S "+Socket+" ] && command -v socat >/dev/null && echo yes || echo no")
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(res.Stdout)) != "yes" {
		return fmt.Errorf("no runtime API at %s, or no socat: %w", Socket, ErrNotManaged)
	}
	_, err = lb.stat(ctx, server)
	return err
}

// haproxyDrainer drains one server on every load balancer.
type haproxyDrainer struct {
	server               string
	lbs                  []*haproxyLB
	drainWait, readyWait time.Duration
}

func (h *haproxyDrainer) Method() string {
	names := make([]string, len(h.lbs))
	for i, lb := range h.lbs {
		names[i] = lb.name
	}
	return "haproxy's runtime API on " + strings.Join(names, ", ")
}

func (h *haproxyDrainer) path() string { return Backend + "/" + h.server }

// Drain: no new connection to the server from any load balancer, its open
// ones given drainWait to finish, then the server in maintenance and what
// is left of its sessions shut (kept-alive clients reconnect to another).
func (h *haproxyDrainer) Drain(ctx context.Context) error {
	for _, lb := range h.lbs {
		if err := lb.set(ctx, "set server "+h.path()+" state drain"); err != nil {
			return err
		}
	}
	// Open sessions after the wait are cut below: not an error.
	_ = poll.Until(ctx, h.drainWait, 200*time.Millisecond, "connections to "+h.server+" finished", func(ctx context.Context) error {
		for _, lb := range h.lbs {
			st, err := lb.stat(ctx, h.server)
			if err != nil {
				return err
			}
			if st.Sessions > 0 {
				return fmt.Errorf("%d sessions open through %s", st.Sessions, lb.name)
			}
		}
		return nil
	})
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, lb := range h.lbs {
		if err := lb.set(ctx, "set server "+h.path()+" state maint"); err != nil {
			return err
		}
		if err := lb.set(ctx, "shutdown sessions server "+h.path()); err != nil {
			return err
		}
	}
	return nil
}

// Undrain: the server ready again on every load balancer, then a wait until
// each sees it UP by its health check (the API server's /readyz).
func (h *haproxyDrainer) Undrain(ctx context.Context) error {
	var errs []error
	for _, lb := range h.lbs {
		errs = append(errs, lb.set(ctx, "set server "+h.path()+" state ready"))
	}
	if err := errors.Join(errs...); err != nil || h.readyWait < 0 {
		return err
	}
	return poll.Until(ctx, h.readyWait, 250*time.Millisecond, "every haproxy sees "+h.server+" UP", func(ctx context.Context) error {
		for _, lb := range h.lbs {
			st, err := lb.stat(ctx, h.server)
			if err != nil {
				return err
			}
			if st.Status != "UP" {
				return fmt.Errorf("haproxy on %s sees %s %s (its /readyz check)", lb.name, h.server, st.Status)
			}
		}
		return nil
	})
}
