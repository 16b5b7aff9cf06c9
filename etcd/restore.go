package etcd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
)

// DefaultRevisionBump is how far a restore moves etcd's revision on, as the
// etcd docs advise (etcdutl snapshot restore --bump-revision 1000000000
// --mark-compacted): every watcher and informer sees its revision compacted
// and lists again, instead of silently missing what changed since the
// snapshot.
const DefaultRevisionBump = 1_000_000_000

// RestoreMemberOptions restore one member's data directory from a snapshot.
type RestoreMemberOptions struct {
	Snapshot string
	// Name, PeerURLs: this member's; InitialCluster: every member's
	// name=peerURL, as etcd's --initial-cluster; ClusterToken: a new one.
	Name           string
	PeerURLs       []string
	InitialCluster string
	ClusterToken   string
	// DataDir is the member's data directory (kubeadm: /var/lib/etcd).
	DataDir string
	// RevisionBump (default DefaultRevisionBump) and the compaction mark.
	RevisionBump uint64
	// FromDataDir: the snapshot is a member's own db file (copied from a
	// data directory), which has no sha256 trailer.
	FromDataDir bool
	Now         func() time.Time
}

// RestoreMemberResult says where the data went.
type RestoreMemberResult struct {
	DataDir string `json:"dataDir"`
	// Aside is where the old data directory was moved (kept: the way back).
	Aside string `json:"aside,omitempty"`
}

// RestoreMember restores the snapshot with etcdutl's library into a new
// directory next to DataDir, then moves DataDir aside (never deleted) and
// the new directory into its place. DataDir itself is only ever renamed, so
// a failure leaves it as it was, and an interrupted run leaves either the
// old directory or the restored one in place, the other next to it.
func RestoreMember(o RestoreMemberOptions) (RestoreMemberResult, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RevisionBump == 0 {
		o.RevisionBump = DefaultRevisionBump
	}
	if o.DataDir == "" || !filepath.IsAbs(o.DataDir) {
		return RestoreMemberResult{}, fmt.Errorf("restore: data directory %q is not an absolute path", o.DataDir)
	}
	dir := filepath.Clean(o.DataDir)
	stamp := o.Now().UTC().Format("20060102T150405Z")
	fresh := dir + ".kbootstrap-restore-" + stamp
	if err := os.RemoveAll(fresh); err != nil {
		return RestoreMemberResult{}, err
	}
	err := snapshot.NewV3(zap.NewNop()).Restore(snapshot.RestoreConfig{
		SnapshotPath:        o.Snapshot,
		Name:                o.Name,
		OutputDataDir:       fresh,
		PeerURLs:            o.PeerURLs,
		InitialCluster:      o.InitialCluster,
		InitialClusterToken: o.ClusterToken,
		SkipHashCheck:       o.FromDataDir,
		RevisionBump:        o.RevisionBump,
		MarkCompacted:       true,
	})
	if err != nil {
		os.RemoveAll(fresh)
		return RestoreMemberResult{}, fmt.Errorf("restore %s as member %s: %w", o.Snapshot, o.Name, err)
	}
	if err := os.Chmod(fresh, 0o700); err != nil {
		return RestoreMemberResult{}, err
	}
	res := RestoreMemberResult{DataDir: dir}
	if _, err := os.Stat(dir); err == nil {
		res.Aside = dir + ".kbootstrap-before-" + stamp
		if err := os.Rename(dir, res.Aside); err != nil {
			return RestoreMemberResult{}, fmt.Errorf("move %s aside: %w", dir, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return RestoreMemberResult{}, err
	}
	if err := os.Rename(fresh, dir); err != nil {
		return res, fmt.Errorf("move the restored data into %s (the old data is in %s): %w", dir, res.Aside, err)
	}
	return res, nil
}
