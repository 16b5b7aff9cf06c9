package backup

import (
	"crypto"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/version"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"
	"sigs.k8s.io/yaml"

	"github.com/kbootstrap/kbootstrap/etcd"
)

// RequiredPKI are the files of /etc/kubernetes/pki a bundle must hold: the
// cluster's CAs with their keys and the service-account key pair, what
// kubeadm cannot make again without every existing credential breaking.
var RequiredPKI = []string{
	"ca.crt", "ca.key",
	"front-proxy-ca.crt", "front-proxy-ca.key",
	"etcd/ca.crt", "etcd/ca.key",
	"sa.key", "sa.pub",
}

// Verify reads a whole bundle and checks it: every entry against the
// manifest's sums, the snapshot against etcd's sha256 trailer, every
// certificate parsed and matched to its key, the service-account key pair,
// the ClusterConfiguration and the versions. The error joins every reason,
// each naming its entry.
func Verify(r io.Reader) (*Manifest, error) {
	m, _, err := verify(r, nil)
	return m, err
}

// verify is Verify that also returns the bundle's small files (PKI and
// ClusterConfiguration, by entry name) and copies the snapshot to
// snapshotTo when it is not nil.
func verify(r io.Reader, snapshotTo io.Writer) (*Manifest, map[string][]byte, error) {
	small := map[string][]byte{}
	var snapErr error
	snapSeen := false
	m, err := Visit(r, func(name string, body io.Reader) error {
		switch {
		case name == SnapshotName:
			snapSeen = true
			th := etcd.NewTrailerHash()
			w := io.Writer(th)
			if snapshotTo != nil {
				w = io.MultiWriter(th, snapshotTo)
			}
			if _, err := io.Copy(w, body); err != nil {
				return err
			}
			snapErr = th.Check()
		case strings.HasPrefix(name, PKIDir), name == ClusterConfigName:
			b, err := io.ReadAll(io.LimitReader(body, 1<<20))
			if err != nil {
				return err
			}
			small[name] = b
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	var errs []error
	switch {
	case !snapSeen:
		errs = append(errs, fmt.Errorf("%s: missing", SnapshotName))
	case snapErr != nil:
		errs = append(errs, fmt.Errorf("%s: %w", SnapshotName, snapErr))
	}
	errs = append(errs, checkPKI(small)...)
	if err := checkClusterConfig(small[ClusterConfigName]); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", ClusterConfigName, err))
	}
	if _, err := version.ParseSemantic(m.KubernetesVersion); err != nil {
		errs = append(errs, fmt.Errorf("%s: kubernetesVersion %q: %w", ManifestName, m.KubernetesVersion, err))
	}
	if _, err := version.ParseSemantic(strings.TrimPrefix(m.EtcdVersion, "v")); err != nil {
		errs = append(errs, fmt.Errorf("%s: etcdVersion %q: %w", ManifestName, m.EtcdVersion, err))
	}
	if len(m.Members) == 0 {
		errs = append(errs, fmt.Errorf("%s: no etcd member", ManifestName))
	}
	if err := errors.Join(errs...); err != nil {
		return m, nil, err
	}
	return m, small, nil
}

// checkPKI parses every certificate and key of the bundle's PKI and matches
// each certificate to its key (name.crt with name.key) and sa.pub to sa.key.
func checkPKI(files map[string][]byte) []error {
	var errs []error
	for _, f := range RequiredPKI {
		if _, ok := files[PKIDir+f]; !ok {
			errs = append(errs, fmt.Errorf("%s%s: missing", PKIDir, f))
		}
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	keys := map[string]crypto.PublicKey{}
	for _, n := range names {
		if !strings.HasPrefix(n, PKIDir) || !strings.HasSuffix(n, ".key") {
			continue
		}
		k, err := keyutil.ParsePrivateKeyPEM(files[n])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n, err))
			continue
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			errs = append(errs, fmt.Errorf("%s: a %T is not a signing key", n, k))
			continue
		}
		keys[strings.TrimSuffix(n, ".key")] = s.Public()
	}
	for _, n := range names {
		base, isCert := strings.CutSuffix(n, ".crt")
		if !strings.HasPrefix(n, PKIDir) {
			continue
		}
		if isCert {
			certs, err := certutil.ParseCertsPEM(files[n])
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", n, err))
				continue
			}
			if pub, ok := keys[base]; ok && !samePublic(certs[0].PublicKey, pub) {
				errs = append(errs, fmt.Errorf("%s: its key is not %s.key", n, base))
			}
		}
		if n == PKIDir+"sa.pub" {
			pubs, err := keyutil.ParsePublicKeysPEM(files[n])
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", n, err))
				continue
			}
			if pub, ok := keys[PKIDir+"sa"]; ok && !samePublic(pubs[0], pub) {
				errs = append(errs, fmt.Errorf("%s: not the public half of %ssa.key", n, PKIDir))
			}
		}
	}
	return errs
}

func samePublic(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

// checkClusterConfig: kubeadm's ClusterConfiguration, as the kubeadm-config
// ConfigMap holds it.
func checkClusterConfig(raw []byte) error {
	if raw == nil {
		return errors.New("missing")
	}
	var doc struct {
		Kind              string `json:"kind"`
		KubernetesVersion string `json:"kubernetesVersion"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return err
	}
	if doc.Kind != "ClusterConfiguration" {
		return fmt.Errorf("kind %q, want ClusterConfiguration", doc.Kind)
	}
	return nil
}
