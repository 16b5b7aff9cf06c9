// Command nodewriter is an end-to-end test helper: it writes a slow stream
// of SIZE bytes to PATH on the first node of an inventory through kbootstrap's
// node layer (SFTP as root, sudo for other users), so a test can drop the
// connection halfway and check that nothing partial reaches PATH.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/node"
)

// slowReader yields size bytes at about rate bytes per second.
type slowReader struct {
	left, rate int64
	start      time.Time
	sent       int64
}

func (r *slowReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	if r.start.IsZero() {
		r.start = time.Now()
	}
	// Pace to the rate.
	if ahead := time.Duration(float64(r.sent)/float64(r.rate)*float64(time.Second)) - time.Since(r.start); ahead > 0 {
		time.Sleep(ahead)
	}
	n := int64(min(len(p), 32*1024))
	n = min(n, r.left)
	for i := range p[:n] {
		p[i] = 'x'
	}
	r.left -= n
	r.sent += n
	return int(n), nil
}

// sized lets the sudo path know the size without buffering.
type sized struct {
	*slowReader
	size int
}

func (s sized) Len() int { return s.size }

func main() {
	if len(os.Args) != 5 || os.Args[2] != "write" {
		fmt.Fprintln(os.Stderr, "usage: nodewriter INVENTORY write PATH SIZE")
		os.Exit(2)
	}
	inv, err := inventory.Load(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	size, _ := strconv.Atoi(os.Args[4])
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pool := node.NewPool(inv, node.PoolOptions{KeepAlive: 2 * time.Second})
	defer pool.Close()
	n, err := pool.Connect(ctx, inv.Nodes[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	n = node.Sudo(n)
	r := sized{&slowReader{left: int64(size), rate: 8 << 20}, size}
	if err := n.WriteFile(ctx, os.Args[3], r, node.WriteOptions{Mode: 0o600}); err != nil {
		fmt.Fprintln(os.Stderr, "write:", err)
		os.Exit(1)
	}
	fmt.Println("written")
}
