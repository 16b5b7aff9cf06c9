package etcd

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
)

func freeURL(t *testing.T) url.URL {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return url.URL{Scheme: "http", Host: l.Addr().String()}
}

// startEtcd runs a one-member etcd in dir, in this process.
func startEtcd(t *testing.T, dir string, client, peer url.URL) *embed.Etcd {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = "m1"
	cfg.Dir = dir
	cfg.LogLevel = "error"
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		t.Fatal("etcd did not start")
	}
	return e
}

// A real snapshot of an in-process etcd, restored by RestoreMember over the
// member's data directory: the old directory is kept aside, etcd starts on
// the restored one with the key written before the snapshot, without the
// one written after, and its revision bumped past DefaultRevisionBump.
func TestRestoreMember(t *testing.T) {
	tmp := t.TempDir()
	data := filepath.Join(tmp, "etcd")
	client, peer := freeURL(t), freeURL(t)
	e := startEtcd(t, data, client, peer)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{client.String()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := cli.Put(ctx, "before", "1"); err != nil {
		t.Fatal(err)
	}
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(tmp, "snapshot.db")
	f, _ := os.Create(snap)
	th := NewTrailerHash()
	if _, err := io.Copy(io.MultiWriter(f, th), rc); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := th.Check(); err != nil {
		t.Fatalf("the snapshot: %v", err)
	}
	if _, err := cli.Put(ctx, "after", "2"); err != nil {
		t.Fatal(err)
	}
	cli.Close()
	e.Close()

	res, err := RestoreMember(RestoreMemberOptions{Snapshot: snap, Name: "m1", PeerURLs: []string{peer.String()},
		InitialCluster: fmt.Sprintf("m1=%s", peer.String()), ClusterToken: "restored", DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	if res.Aside == "" {
		t.Fatal("no old data directory kept aside")
	}
	if _, err := os.Stat(filepath.Join(res.Aside, "member", "wal")); err != nil {
		t.Errorf("the old data directory aside: %v", err)
	}
	if fi, err := os.Stat(data); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("restored %s: %v %v", data, fi, err)
	}

	e = startEtcd(t, data, client, peer)
	cli, err = clientv3.New(clientv3.Config{Endpoints: []string{client.String()}, DialTimeout: 5 * time.Second})
	if err != nil {
		e.Close()
		t.Fatal(err)
	}
	before, err := cli.Get(ctx, "before")
	if err != nil || len(before.Kvs) != 1 || string(before.Kvs[0].Value) != "1" {
		t.Errorf("the key written before the snapshot: %+v %v", before, err)
	}
	after, err := cli.Get(ctx, "after")
	if err != nil || len(after.Kvs) != 0 {
		t.Errorf("the key written after the snapshot is back: %+v %v", after, err)
	}
	if before != nil && before.Header.Revision < DefaultRevisionBump {
		t.Errorf("revision %d after the restore, want it bumped past %d", before.Header.Revision, DefaultRevisionBump)
	}

	// The same data directory cannot be clobbered by a bad restore: a
	// damaged snapshot fails and leaves it in place.
	cli.Close()
	e.Close()
	b, _ := os.ReadFile(snap)
	b[len(b)/2] ^= 0xff
	bad := filepath.Join(tmp, "bad.db")
	os.WriteFile(bad, b, 0o600)
	if _, err := RestoreMember(RestoreMemberOptions{Snapshot: bad, Name: "m1", PeerURLs: []string{peer.String()},
		InitialCluster: fmt.Sprintf("m1=%s", peer.String()), ClusterToken: "again", DataDir: data, Now: func() time.Time { return time.Now().Add(time.Hour) }}); err == nil {
		t.Error("a damaged snapshot restored")
	}
	if _, err := os.Stat(filepath.Join(data, "member", "wal")); err != nil {
		t.Errorf("the data directory after a failed restore: %v", err)
	}
}
