package etcd

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strings"
	"time"

	"go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// VerifyResult is what VerifySnapshot found; the bbolt part matches
// `etcdutl snapshot status -w json` (hash, revision, totalKey, totalSize,
// version).
type VerifyResult struct {
	File   string `json:"file"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`

	Hash            uint32 `json:"hash"`
	Revision        int64  `json:"revision"`
	TotalKey        int    `json:"totalKey"`
	TotalSize       int64  `json:"totalSize"`
	Version         string `json:"version"`
	ConsistentIndex uint64 `json:"consistentIndex"`
}

// The bbolt buckets and meta keys of etcd's backend (server/storage/schema).
var (
	bucketKey          = []byte("key")
	bucketMeta         = []byte("meta")
	metaConsistentIdx  = []byte("consistent_index")
	metaStorageVersion = []byte("storageVersion")
)

// revBytesLen is an mvcc revision key: 8 bytes main, '_', 8 bytes sub; a
// tombstone appends 't'.
const revBytesLen = 8 + 1 + 8

// VerifySnapshot re-checks a saved snapshot: etcd's sha256 trailer over the
// database (streamed, constant memory), then a read-only bbolt pass like
// `etcdutl snapshot status`: bbolt's consistency check, the revision, the
// number of live keys, and etcdutl's crc32 hash over every bucket.
func VerifySnapshot(ctx context.Context, file string) (VerifyResult, error) {
	res := VerifyResult{File: file}
	f, err := os.Open(file)
	if err != nil {
		return res, err
	}
	defer f.Close()
	th := NewTrailerHash()
	if _, err := io.CopyBuffer(th, ctxReader{ctx, f}, make([]byte, 1<<20)); err != nil {
		return res, fmt.Errorf("%s: %w", file, err)
	}
	res.Size = th.Size()
	if err := th.Check(); err != nil {
		return res, fmt.Errorf("%s: %w", file, err)
	}
	res.SHA256 = hex.EncodeToString(th.Trailer())

	db, err := bbolt.Open(file, 0o400, &bbolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return res, fmt.Errorf("%s: open as bbolt database: %w", file, err)
	}
	defer db.Close()
	err = db.View(func(tx *bbolt.Tx) error {
		var problems []string
		for e := range tx.Check() {
			problems = append(problems, e.Error())
		}
		if len(problems) > 0 {
			return fmt.Errorf("bbolt integrity check found %d errors: %s", len(problems), strings.Join(problems, "; "))
		}
		res.TotalSize = tx.Size()
		if meta := tx.Bucket(bucketMeta); meta != nil {
			res.Version = storageVersion(meta.Get(metaStorageVersion))
			if v := meta.Get(metaConsistentIdx); len(v) == 8 {
				res.ConsistentIndex = binary.BigEndian.Uint64(v)
			}
		}
		h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
		live := map[string]struct{}{}
		c := tx.Cursor()
		for name, _ := c.First(); name != nil; name, _ = c.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			b := tx.Bucket(name)
			if b == nil {
				return fmt.Errorf("nil bucket %q", name)
			}
			h.Write(name)
			isKey := bytes.Equal(name, bucketKey)
			if err := b.ForEach(func(k, v []byte) error {
				h.Write(k)
				h.Write(v)
				if !isKey {
					return nil
				}
				if len(k) != revBytesLen && len(k) != revBytesLen+1 {
					return fmt.Errorf("bucket key: revision key of %d bytes", len(k))
				}
				res.Revision = int64(binary.BigEndian.Uint64(k[:8]))
				var kv mvccpb.KeyValue
				if err := kv.Unmarshal(v); err != nil {
					return fmt.Errorf("bucket key: revision %d: %w", res.Revision, err)
				}
				if len(k) == revBytesLen+1 && k[revBytesLen] == 't' {
					delete(live, string(kv.Key))
				} else {
					live[string(kv.Key)] = struct{}{}
				}
				return nil
			}); err != nil {
				return err
			}
		}
		res.TotalKey = len(live)
		res.Hash = h.Sum32()
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("%s: %w", file, err)
	}
	return res, nil
}

// storageVersion renders meta/storageVersion as etcdutl does (semver
// major.minor.patch), or "" when absent.
func storageVersion(v []byte) string {
	s := string(v)
	if s == "" {
		return ""
	}
	if strings.Count(s, ".") == 1 {
		s += ".0"
	}
	return s
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// LastRevision reads the revision of a snapshot or database file: the main
// revision of the last key of the "key" bucket (what etcdutl's status ends
// on). Only the pages on the way to that key are read, so it costs little
// memory whatever the database size.
func LastRevision(file string) (int64, error) {
	db, err := bbolt.Open(file, 0o400, &bbolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return 0, fmt.Errorf("%s: open as bbolt database: %w", file, err)
	}
	defer db.Close()
	var rev int64
	err = db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketKey)
		if b == nil {
			return nil // an empty etcd
		}
		if k, _ := b.Cursor().Last(); len(k) >= 8 {
			rev = int64(binary.BigEndian.Uint64(k[:8]))
		}
		return nil
	})
	return rev, err
}
