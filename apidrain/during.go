package apidrain

import (
	"context"
	"errors"
	"time"

	"github.com/kbootstrap/kbootstrap/progress"
)

// During drains o.Node's API server (the method For chooses, saying why
// when it is not the load balancer's), runs f, and undrains it on every way
// out of f, interrupted or not (on a context of its own, bounded to a
// minute). A node without iptables is not drained: f runs anyway and the
// status says its clients may see the restart.
func During(ctx context.Context, st *progress.Status, o Options, f func() error) (err error) {
	d, why := For(ctx, o)
	if why != nil && !errors.Is(why, ErrNoLoadBalancer) {
		st.Printf("%s: not draining through the load balancer: %v", o.Name, why)
	}
	step := st.Start(o.Name + ": draining the API server (" + d.Method() + ")")
	err = d.Drain(ctx)
	step.End(err)
	switch {
	case errors.Is(err, ErrNoFirewall):
		st.Printf("%s: %v: its clients may see the restart", o.Name, err)
		return f()
	case err != nil:
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		step := st.Start(o.Name + ": undraining the API server")
		uerr := d.Undrain(cctx)
		step.End(uerr)
		if err == nil {
			err = uerr
		}
	}()
	return f()
}
