package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/kbootstrap/kbootstrap/etcd"
	"github.com/kbootstrap/kbootstrap/internal/atomicfile"
	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/kubeadm"
	"github.com/kbootstrap/kbootstrap/node"
	"github.com/kbootstrap/kbootstrap/progress"
)

// Options of Take.
type Options struct {
	// Cluster names the cluster in the bundle (the inventory's name).
	Cluster   string
	Connector node.Connector
	// ControlPlanes are tried in order; the first that answers is used.
	ControlPlanes []inventory.Node
	// Local, instead, is the control plane this runs on (--local: from a
	// timer on the node itself).
	Local  node.Node
	Status *progress.Status
	// File is the bundle to write on this machine (mode 0600).
	File    string
	Secrets Secrets
	// Keep > 1 keeps that many bundles: File, File.1 ... File.(Keep-1).
	Keep int
	// Timeout bounds each etcd call (default 30 s).
	Timeout time.Duration
	// Now is the bundle's time (default time.Now).
	Now func() time.Time
}

// Result is what Take wrote.
type Result struct {
	File     string    `json:"file"`
	Node     string    `json:"node"`
	Size     int64     `json:"size"`
	Seconds  float64   `json:"seconds"`
	Manifest *Manifest `json:"manifest"`
	Rotated  []string  `json:"rotated,omitempty"`
	// Failed are the errors of the control planes tried before Node.
	Failed []error `json:"-"`
}

// Take writes a bundle of the cluster through the first control plane that
// answers: a verified etcd snapshot taken as the API server reaches etcd,
// the PKI files of RequiredPKI, kubeadm's ClusterConfiguration (from the
// kubeadm-config ConfigMap), the versions and etcd's members. The snapshot
// waits in a 0700 directory next to File until the bundle holds it and is
// then removed; the bundle is written under a temporary name, read back and
// verified whole, and only then renamed to File.
func Take(ctx context.Context, o Options) (*Result, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Local != nil {
		return takeFrom(ctx, o, o.Local, "")
	}
	var errs []error
	for _, in := range o.ControlPlanes {
		res, err := takeVia(ctx, o, in)
		if err == nil {
			res.Failed = errs
			return res, nil
		}
		errs = append(errs, &node.NodeError{Node: in.Name, Err: err})
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return nil, errors.New("backup: no control plane in the inventory")
	}
	return nil, errors.Join(errs...)
}

func takeVia(ctx context.Context, o Options, in inventory.Node) (*Result, error) {
	n, err := o.Connector.Connect(ctx, in)
	if err != nil {
		return nil, err
	}
	return takeFrom(ctx, o, node.Sudo(n), "https://"+net.JoinHostPort(in.InternalIP(), kubeadm.APIServerPort))
}

// takeFrom takes the bundle through control plane n (privileged), whose
// API server answers at server ("": the address its manifest advertises).
func takeFrom(ctx context.Context, o Options, n node.Node, server string) (*Result, error) {
	start := time.Now()
	if server == "" {
		b, err := n.ReadFile(ctx, kubeadm.APIServerManifest)
		if err != nil {
			return nil, err
		}
		argv, _, err := etcd.ManifestCommand(b, kubeadm.APIServer)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", kubeadm.APIServerManifest, err)
		}
		addr := etcd.ParseAPIServerArgs(argv).String("advertise-address")
		if addr == "" {
			return nil, fmt.Errorf("%s: no --advertise-address", kubeadm.APIServerManifest)
		}
		server = "https://" + net.JoinHostPort(addr, kubeadm.APIServerPort)
	}
	dir, err := os.MkdirTemp(filepath.Dir(o.File), ".kbootstrap-backup-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	snapFile := filepath.Join(dir, "snapshot.db")
	var snap etcd.SnapshotResult
	err = o.Status.Do("etcd snapshot through "+n.Name(), func() error {
		snap, err = etcd.SnapshotFrom(ctx, n, snapFile, etcd.SnapshotOptions{}, o.Timeout)
		return err
	})
	if err != nil {
		return nil, err
	}
	members, err := etcd.MembersOf(ctx, n, etcd.MembersOptions{Timeout: o.Timeout})
	if err != nil {
		return nil, fmt.Errorf("etcd members: %w", err)
	}
	cs, err := kubeadm.AdminClient(ctx, n, server)
	if err != nil {
		return nil, err
	}
	cm, err := cs.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, "kubeadm-config", metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("kubeadm's ClusterConfiguration: %w", err)
	}
	clusterConfig := []byte(cm.Data["ClusterConfiguration"])
	var cc struct {
		KubernetesVersion string `json:"kubernetesVersion"`
	}
	if err := yaml.Unmarshal(clusterConfig, &cc); err != nil {
		return nil, fmt.Errorf("ConfigMap kube-system/kubeadm-config: ClusterConfiguration: %w", err)
	}
	pki := map[string][]byte{}
	for _, f := range RequiredPKI {
		b, err := n.ReadFile(ctx, kubeadm.PKIDir+"/"+f)
		if err != nil {
			return nil, fmt.Errorf("%s/%s: %w", kubeadm.PKIDir, f, err)
		}
		pki[f] = b
	}

	m := Manifest{Cluster: o.Cluster, Created: o.Now().UTC(), KubernetesVersion: cc.KubernetesVersion,
		EtcdVersion: snap.Version, SnapshotRevision: snap.Revision}
	for _, mb := range members.Members {
		m.Members = append(m.Members, Member{Name: mb.Name, PeerURLs: mb.PeerURLs})
	}
	part := filepath.Join(dir, "bundle")
	var written *Manifest
	err = o.Status.Do("Writing the bundle", func() error {
		sf, err := os.Open(snapFile)
		if err != nil {
			return err
		}
		defer sf.Close()
		entries := []Entry{{Name: SnapshotName, Size: snap.Size, Body: sf}, {Name: ClusterConfigName, Size: int64(len(clusterConfig)), Body: bytes.NewReader(clusterConfig)}}
		for _, f := range RequiredPKI {
			entries = append(entries, Entry{Name: PKIDir + f, Size: int64(len(pki[f])), Body: bytes.NewReader(pki[f])})
		}
		written, err = writeVerified(part, o.Secrets, m, entries)
		return err
	})
	if err != nil {
		return nil, err
	}
	rotated, err := atomicfile.RotateInto(part, o.File, o.Keep)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(o.File)
	if err != nil {
		return nil, err
	}
	return &Result{File: o.File, Node: n.Name(), Size: fi.Size(), Seconds: time.Since(start).Seconds(), Manifest: written, Rotated: rotated}, nil
}

// writeVerified writes a bundle of entries to file (mode 0600, atomically):
// the plain stream goes to the file, sealed when s asks, and, as it is
// written, through Verify, so that a bundle encrypted to a recipient is
// verified too without its identity. A bundle that does not verify is an
// error and file is not left behind.
func writeVerified(file string, s Secrets, m Manifest, entries []Entry) (*Manifest, error) {
	var written *Manifest
	pr, pw := io.Pipe()
	vr, vw := io.Pipe()
	verified := make(chan error, 1)
	go func() {
		_, err := Verify(vr)
		io.Copy(io.Discard, vr) // a failed Verify must not stall the writer
		verified <- err
	}()
	go func() {
		w, err := Seal(pw, s)
		if err == nil {
			written, err = Write(io.MultiWriter(w, vw), m, entries)
			if cerr := w.Close(); err == nil {
				err = cerr
			}
		}
		vw.CloseWithError(err)
		pw.CloseWithError(err)
	}()
	err := atomicfile.Write(file, pr, atomicfile.Options{Mode: 0o600})
	pr.CloseWithError(err)
	verr := <-verified
	if err == nil && verr != nil {
		os.Remove(file)
		err = fmt.Errorf("the bundle as written does not verify: %w", verr)
	}
	return written, err
}
