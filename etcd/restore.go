package etcd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/util/version"
	"sigs.k8s.io/yaml"
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
	// Aside is where the member's data before the restore was moved (kept:
	// the way back), DataDir/member.kbootstrap-before-<time>.
	Aside string `json:"aside,omitempty"`
}

// RestoreMember restores the snapshot with etcdutl's library into a new
// directory inside DataDir, then moves DataDir/member aside (never deleted)
// and the restored member directory into its place. Everything stays
// inside DataDir, which is often a file system of its own (a disk for etcd;
// the lab's nodes bind-mount it): renames never cross it. A failure leaves
// DataDir/member as it was; an interrupted run leaves either the old member
// directory or the restored one in place, the other beside it. etcd warns
// about, and otherwise ignores, the other entries of its data directory.
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
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return RestoreMemberResult{}, err
	}
	// What an interrupted restore left half-written is its own output,
	// never data: removed.
	stale, _ := filepath.Glob(filepath.Join(dir, ".kbootstrap-restore-*"))
	for _, d := range stale {
		if err := os.RemoveAll(d); err != nil {
			return RestoreMemberResult{}, err
		}
	}
	stamp := o.Now().UTC().Format("20060102T150405Z")
	fresh := filepath.Join(dir, ".kbootstrap-restore-"+stamp)
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
	member := filepath.Join(dir, "member")
	res := RestoreMemberResult{DataDir: dir}
	if _, err := os.Stat(member); err == nil {
		res.Aside = member + ".kbootstrap-before-" + stamp
		if err := os.Rename(member, res.Aside); err != nil {
			return RestoreMemberResult{}, fmt.Errorf("move %s aside: %w", member, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return RestoreMemberResult{}, err
	}
	if err := os.Rename(filepath.Join(fresh, "member"), member); err != nil {
		return res, fmt.Errorf("move the restored data into %s (the old data is in %s): %w", member, res.Aside, err)
	}
	if err := os.RemoveAll(fresh); err != nil {
		return res, err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return res, err
	}
	return res, nil
}

// ManifestMember is what a restore needs to know of a stacked etcd member,
// read from its static pod manifest.
type ManifestMember struct {
	Name     string   `json:"name"`
	PeerURLs []string `json:"peerURLs"`
	DataDir  string   `json:"dataDir"`
	// Image is the container's image; Version its etcd version
	// (registry.k8s.io/etcd:3.6.5-0 is 3.6.5), "" when the tag says none.
	Image   string `json:"image"`
	Version string `json:"version,omitempty"`
}

// ParseManifestMember reads etcd's static pod manifest: --name,
// --initial-advertise-peer-urls, --data-dir and the image. Each missing
// flag is named.
func ParseManifestMember(manifest []byte) (ManifestMember, error) {
	argv, _, err := ManifestCommand(manifest, etcdContainer)
	if err != nil {
		return ManifestMember{}, err
	}
	a := ParseEtcdArgs(argv)
	m := ManifestMember{Name: a.String("name"), DataDir: a.String("data-dir")}
	for _, u := range a.List("initial-advertise-peer-urls") {
		m.PeerURLs = append(m.PeerURLs, strings.Split(u, ",")...)
	}
	var errs []error
	if m.Name == "" {
		errs = append(errs, errors.New("no --name"))
	}
	if len(m.PeerURLs) == 0 {
		errs = append(errs, errors.New("no --initial-advertise-peer-urls"))
	}
	if m.DataDir == "" {
		errs = append(errs, errors.New("no --data-dir"))
	}
	var p struct {
		Spec struct {
			Containers []struct {
				Name  string `json:"name"`
				Image string `json:"image"`
			} `json:"containers"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(manifest, &p); err == nil {
		for _, c := range p.Spec.Containers {
			if c.Name == etcdContainer || len(p.Spec.Containers) == 1 {
				m.Image = c.Image
			}
		}
	}
	if i := strings.LastIndex(m.Image, ":"); i >= 0 && !strings.Contains(m.Image[i:], "/") {
		tag := strings.TrimPrefix(m.Image[i+1:], "v")
		tag, _, _ = strings.Cut(tag, "-")
		if _, err := version.ParseSemantic(tag); err == nil {
			m.Version = tag
		}
	}
	return m, errors.Join(errs...)
}

// Newer reports whether etcd version a is of a later minor than b (a
// snapshot of a newer minor may hold data an older etcd cannot read).
// Either unreadable is not newer.
func Newer(a, b string) bool {
	va, err := version.ParseGeneric(strings.TrimPrefix(a, "v"))
	if err != nil {
		return false
	}
	vb, err := version.ParseGeneric(strings.TrimPrefix(b, "v"))
	if err != nil {
		return false
	}
	return va.Major() > vb.Major() || va.Major() == vb.Major() && va.Minor() > vb.Minor()
}
