// Command exec is the connection-reuse half of bench/exec/run.sh: it runs a
// sequence of commands on every node of an inventory through kbootstrap's
// node layer, one SSH connection per node for the whole sequence (as every
// kbootstrap run does), each command in its own session, and prints the
// elapsed seconds.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/node"
)

func main() {
	inv := flag.String("i", "kbootstrap.yaml", "inventory")
	count := flag.Int("n", 10, "commands per node")
	concurrency := flag.Int("concurrency", 32, "nodes at once")
	flag.Parse()
	if err := run(*inv, *count, *concurrency); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(file string, count, concurrency int) error {
	inv, err := inventory.Load(file)
	if err != nil {
		return err
	}
	ctx := context.Background()
	start := time.Now()
	pool := node.NewPool(inv, node.PoolOptions{})
	defer pool.Close()
	_, err = node.Parallel(ctx, inv.Nodes, concurrency, func(ctx context.Context, in inventory.Node) (struct{}, error) {
		n, err := pool.Connect(ctx, in)
		if err != nil {
			return struct{}{}, err
		}
		for i := range count {
			if _, err := n.Run(ctx, fmt.Sprintf("echo step %d >/dev/null", i)); err != nil {
				return struct{}{}, err
			}
		}
		return struct{}{}, nil
	})
	if err != nil {
		return err
	}
	fmt.Printf("%.3f\n", time.Since(start).Seconds())
	return nil
}
