package etcd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/kbootstrap/kbootstrap/internal/atomicfile"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// TrailerSize is the size of the sha256 digest etcd appends to a snapshot.
const TrailerSize = sha256.Size

// HasTrailer reports whether a snapshot of size bytes carries etcd's sha256
// trailer: etcd pads the database to a multiple of 512 bytes, so a size
// whose remainder is exactly 32 has one (the rule of etcdutl and etcdctl).
func HasTrailer(size int64) bool { return size%512 == TrailerSize }

// DefaultIdleTimeout is how long a snapshot stream may stay silent (no byte
// received) before it is abandoned.
const DefaultIdleTimeout = 30 * time.Second

// SnapshotOptions tune SaveSnapshot.
type SnapshotOptions struct {
	// Keep > 0 keeps that many snapshots: FILE and FILE.1 ... FILE.(Keep-1),
	// older ones shifted up by one and the oldest dropped. 0 replaces FILE.
	Keep int
	// IdleTimeout abandons a stream that delivers nothing for this long;
	// 0 means DefaultIdleTimeout.
	IdleTimeout time.Duration
}

// SnapshotResult describes a saved snapshot.
type SnapshotResult struct {
	Node     string        `json:"node"`
	Endpoint string        `json:"endpoint"`
	File     string        `json:"file"`
	Size     int64         `json:"size"`
	Revision int64         `json:"revision"`
	SHA256   string        `json:"sha256"` // of the database, as in the trailer
	Version  string        `json:"version,omitempty"`
	Duration time.Duration `json:"-"`
	// DurationSeconds is Duration for JSON; BytesPerSecond is Size over it.
	DurationSeconds float64  `json:"durationSeconds"`
	BytesPerSecond  float64  `json:"bytesPerSecond"`
	Rotated         []string `json:"rotated,omitempty"`
}

// TrailerHash hashes everything written to it except the last TrailerSize
// bytes, which it keeps as the trailer: the stream of an etcd snapshot is
// checked in one pass, in constant memory.
type TrailerHash struct {
	h    hash.Hash
	tail [TrailerSize]byte
	n    int64 // bytes written
}

// NewTrailerHash returns an empty TrailerHash.
func NewTrailerHash() *TrailerHash { return &TrailerHash{h: sha256.New()} }

// Write implements io.Writer; it never fails.
func (t *TrailerHash) Write(p []byte) (int, error) {
	held := min(t.n, TrailerSize) // bytes currently held in tail
	t.n += int64(len(p))
	if len(p) >= TrailerSize {
		t.h.Write(t.tail[:held])
		t.h.Write(p[:len(p)-TrailerSize])
		copy(t.tail[:], p[len(p)-TrailerSize:])
		return len(p), nil
	}
	// Fewer new bytes than a trailer: flush what falls out of the window.
	total := int(held) + len(p)
	if over := total - TrailerSize; over > 0 {
		t.h.Write(t.tail[:over])
		copy(t.tail[:], t.tail[over:held])
		held -= int64(over)
	}
	copy(t.tail[held:], p)
	return len(p), nil
}

// Size is the number of bytes written.
func (t *TrailerHash) Size() int64 { return t.n }

// Sum is the sha256 of the body (all but the trailer).
func (t *TrailerHash) Sum() []byte { return t.h.Sum(nil) }

// Trailer is the last TrailerSize bytes written (valid once Size >= 32).
func (t *TrailerHash) Trailer() []byte { return t.tail[:] }

// ErrNoTrailer is a snapshot without etcd's sha256 trailer.
var ErrNoTrailer = errors.New("no sha256 trailer (size % 512 != 32)")

// ErrTrailerMismatch is a snapshot whose body does not hash to its trailer.
var ErrTrailerMismatch = errors.New("sha256 of the database does not match the snapshot's trailer")

// Check verifies the trailer.
func (t *TrailerHash) Check() error {
	if !HasTrailer(t.n) {
		return fmt.Errorf("%w: %d bytes", ErrNoTrailer, t.n)
	}
	if sum := t.Sum(); string(sum) != string(t.Trailer()) {
		return fmt.Errorf("%w: computed %x, trailer %x", ErrTrailerMismatch, sum, t.Trailer())
	}
	return nil
}

// SaveSnapshot streams a snapshot of the client's first endpoint into file.
// The bytes go to file+".part" (mode 0600) and through a sha256 as they
// arrive; only when etcd's trailer matches is the part fsynced and renamed to
// file. On any error, including ctx being cancelled or the connection being
// cut, the part is removed and file is left as it was. Memory use does not
// depend on the database size.
func (c *Client) SaveSnapshot(ctx context.Context, file string, opts SnapshotOptions) (res SnapshotResult, err error) {
	idle := opts.IdleTimeout
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	ep := c.endpoints[0]
	res = SnapshotResult{Node: c.node, Endpoint: ep, File: file}
	wrap := func(format string, args ...any) error {
		return fmt.Errorf("node %s: etcd snapshot from %s: "+format, append([]any{c.node, ep}, args...)...)
	}
	part := file + ".part"
	f, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return res, wrap("%w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(part)
		}
	}()
	// O_TRUNC keeps the mode of a stale part left by a crash: force 0600.
	if err = f.Chmod(0o600); err != nil {
		return res, wrap("%w", err)
	}

	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// The watchdog abandons a stream that stops delivering: the first bytes
	// must come within the client's call timeout (etcd starts sending at
	// once), later ones within the idle timeout.
	var progress atomic.Int64
	watchdogDone := make(chan struct{})
	go func() {
		defer close(watchdogDone)
		t := time.NewTicker(min(idle, c.timeout) / 10)
		defer t.Stop()
		last, lastChange := int64(0), time.Now()
		for {
			select {
			case <-sctx.Done():
				return
			case now := <-t.C:
				p := progress.Load()
				if p != last {
					last, lastChange = p, now
					continue
				}
				if p == 0 && now.Sub(lastChange) >= c.timeout {
					// Nothing at all: etcd down or unreachable.
					cancel(fmt.Errorf("etcd sent nothing within %s (%s)", c.timeout, c.diagnose(ctx)))
					return
				}
				if p > 0 && now.Sub(lastChange) >= idle {
					cancel(fmt.Errorf("no data from etcd for %s after %d bytes", idle, p))
					return
				}
			}
		}
	}()
	defer func() { cancel(nil); <-watchdogDone }()

	start := time.Now()
	// The raw stream rather than clientv3's Snapshot: no pipe and no copy
	// between gRPC and the file, one reused message (see chunkCodec).
	stream, err := pb.NewMaintenanceClient(c.ActiveConnection()).Snapshot(sctx, &pb.SnapshotRequest{})
	if err != nil {
		return res, wrap("%w", streamErr(sctx, err))
	}
	th := NewTrailerHash()
	hs := newHashStage(th)
	defer hs.close()
	for {
		msg := hs.next()
		err = stream.RecvMsg(msg)
		if errors.Is(err, io.EOF) {
			err = nil
			break
		}
		if err != nil {
			return res, wrap("after %d bytes: %w", progress.Load(), streamErr(sctx, err))
		}
		if res.Version == "" {
			res.Version = msg.Version
		}
		if _, err = f.Write(msg.Blob); err != nil {
			return res, wrap("write %s: %w", part, err)
		}
		progress.Add(int64(len(msg.Blob)))
		hs.hash(msg)
	}
	hs.close()                        // every chunk hashed
	if err = sctx.Err(); err != nil { // cancelled right at the end
		return res, wrap("%w", streamErr(sctx, err))
	}
	if err = th.Check(); err != nil {
		return res, wrap("%w", err)
	}
	if err = f.Sync(); err != nil {
		return res, wrap("fsync %s: %w", part, err)
	}
	if err = f.Close(); err != nil {
		return res, wrap("close %s: %w", part, err)
	}
	// etcd's stream carries no revision: read it from the file (a few
	// pages), which also proves it is a bbolt database.
	if res.Revision, err = LastRevision(part); err != nil {
		return res, wrap("%w", err)
	}
	res.Rotated, err = atomicfile.RotateInto(part, file, opts.Keep)
	if err != nil {
		return res, wrap("%w", err)
	}
	res.Duration = time.Since(start)
	res.Size = th.Size()
	res.SHA256 = hex.EncodeToString(th.Trailer())
	res.DurationSeconds = res.Duration.Seconds()
	if s := res.Duration.Seconds(); s > 0 {
		res.BytesPerSecond = float64(res.Size) / s
	}
	return res, nil
}

// hashStage hashes snapshot chunks on its own goroutine while the next
// chunk is received and written: the sha256 of the stream then costs no
// throughput on a machine with a spare core. Chunks live in a small ring of
// reused messages (constant memory): a message goes back to the receiver
// only once hashed.
type hashStage struct {
	msgs   [8]pb.SnapshotResponse
	free   chan *pb.SnapshotResponse
	queue  chan *pb.SnapshotResponse
	done   chan struct{}
	closed bool
}

func newHashStage(th *TrailerHash) *hashStage {
	hs := &hashStage{free: make(chan *pb.SnapshotResponse, 8), queue: make(chan *pb.SnapshotResponse, 8), done: make(chan struct{})}
	for i := range hs.msgs {
		hs.free <- &hs.msgs[i]
	}
	go func() {
		defer close(hs.done)
		for m := range hs.queue {
			th.Write(m.Blob)
			hs.free <- m
		}
	}()
	return hs
}

// next returns a message to receive into (waiting for the hasher if all
// eight are queued).
func (hs *hashStage) next() *pb.SnapshotResponse { return <-hs.free }

// hash queues a received message.
func (hs *hashStage) hash(m *pb.SnapshotResponse) { hs.queue <- m }

// close waits until every queued chunk is hashed; it may be called twice.
func (hs *hashStage) close() {
	if !hs.closed {
		hs.closed = true
		close(hs.queue)
		<-hs.done
	}
}

// streamErr prefers the watchdog's or the caller's reason over gRPC's
// "context canceled".
func streamErr(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(err, cause) {
		return fmt.Errorf("%w (%v)", cause, err)
	}
	return err
}
