package etcd

import (
	"sync"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// chunkCodec is gRPC's proto codec with a cheaper buffer for messages that
// arrive in several HTTP/2 frames, like etcd's 32 KiB snapshot chunks. The
// stock codec copies them into a buffer of gRPC's default pool, whose tier
// for anything over 32 KiB is 1 MiB, cleared on every Get: 32 times the
// bytes of the message, which costs more CPU than the rest of a snapshot
// through the tunnel. Here they go to a 64 KiB buffer that is not cleared
// (the copy overwrites it).
type chunkCodec struct{ base encoding.CodecV2 }

func newChunkCodec() encoding.CodecV2 {
	return chunkCodec{base: encoding.GetCodecV2(proto.Name)}
}

func (c chunkCodec) Name() string { return c.base.Name() }

func (c chunkCodec) Marshal(v any) (mem.BufferSlice, error) { return c.base.Marshal(v) }

func (c chunkCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if m, ok := v.(*pb.SnapshotResponse); ok {
		// The snapshot stream reuses one message: its Blob keeps its
		// capacity from chunk to chunk instead of allocating 32 KiB each.
		buf := data.MaterializeToBuffer(chunkBuffers)
		defer buf.Free()
		*m = pb.SnapshotResponse{Blob: m.Blob[:0]}
		return m.Unmarshal(buf.ReadOnlyData())
	}
	if len(data) <= 1 {
		return c.base.Unmarshal(data, v) // a single buffer is used in place
	}
	buf := data.MaterializeToBuffer(chunkBuffers)
	defer buf.Free()
	return c.base.Unmarshal(mem.BufferSlice{buf}, v)
}

const chunkBufferSize = 64 << 10

// chunkPool hands out 64 KiB buffers without clearing them; larger requests
// are plain allocations.
type chunkPool struct{ p sync.Pool }

var chunkBuffers mem.BufferPool = &chunkPool{}

func (c *chunkPool) Get(n int) *[]byte {
	if n > chunkBufferSize {
		b := make([]byte, n)
		return &b
	}
	if b, ok := c.p.Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, chunkBufferSize)
	return &b
}

func (c *chunkPool) Put(b *[]byte) {
	if cap(*b) == chunkBufferSize {
		c.p.Put(b)
	}
}
