package etcd

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
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
	if _, err := os.Stat(filepath.Join(res.Aside, "wal")); err != nil || filepath.Dir(res.Aside) != data {
		t.Errorf("the old member directory aside in %s: %v", res.Aside, err)
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
	if left, _ := filepath.Glob(filepath.Join(data, ".kbootstrap-restore-*")); len(left) != 0 {
		t.Errorf("a failed restore left %v", left)
	}
}

func TestParseManifestMember(t *testing.T) {
	const good = `apiVersion: v1
kind: Pod
metadata: {name: etcd, namespace: kube-system}
spec:
  containers:
  - name: etcd
    image: registry.k8s.io/etcd:3.6.5-0
    command:
    - etcd
    - --name=cp2
    - --data-dir=/var/lib/etcd
    - --initial-advertise-peer-urls=https://10.0.0.12:2380
    - --initial-cluster=cp1=https://10.0.0.11:2380,cp2=https://10.0.0.12:2380
    - --initial-cluster-state=existing
`
	m, err := ParseManifestMember([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "cp2" || m.DataDir != "/var/lib/etcd" || len(m.PeerURLs) != 1 || m.PeerURLs[0] != "https://10.0.0.12:2380" ||
		m.Image != "registry.k8s.io/etcd:3.6.5-0" || m.Version != "3.6.5" {
		t.Errorf("ParseManifestMember: %+v", m)
	}
	for _, tc := range []struct{ drop, want string }{
		{"    - --name=cp2\n", "no --name"},
		{"    - --data-dir=/var/lib/etcd\n", "no --data-dir"},
		{"    - --initial-advertise-peer-urls=https://10.0.0.12:2380\n", "no --initial-advertise-peer-urls"},
	} {
		if _, err := ParseManifestMember([]byte(strings.Replace(good, tc.drop, "", 1))); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("without %q: %v, want %q", strings.TrimSpace(tc.drop), err, tc.want)
		}
	}
	m, err = ParseManifestMember([]byte(strings.Replace(good, "registry.k8s.io/etcd:3.6.5-0", "localhost:5000/etcd@sha256:abc", 1)))
	if err != nil || m.Version != "" {
		t.Errorf("an image without a version tag: %+v %v", m, err)
	}
}

func TestNewer(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"3.6.0", "3.6.5", false},
		{"3.6.5", "3.6.0", false}, // same minor: readable
		{"3.6.0", "3.5.21", true},
		{"3.5.0", "3.6.5", false},
		{"4.0.0", "3.6.5", true},
		{"v3.7.1", "3.6.5", true},
		{"", "3.6.5", false},
		{"3.6.0", "", false},
	} {
		if got := Newer(tc.a, tc.b); got != tc.want {
			t.Errorf("Newer(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
