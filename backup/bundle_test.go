package backup

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"
)

// fakeSnapshot is n 512-byte pages and etcd's sha256 trailer.
func fakeSnapshot(t *testing.T, pages int) []byte {
	t.Helper()
	b := make([]byte, 512*pages)
	rand.Read(b)
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

// caPair is a self-signed CA certificate and its key, PEM.
func caPair(t *testing.T, cn string) (crt, key []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c, err := certutil.NewSelfSignedCACert(certutil.Config{CommonName: cn}, k)
	if err != nil {
		t.Fatal(err)
	}
	key, err = keyutil.MarshalPrivateKeyToPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), key
}

// testEntries is a complete bundle's content.
func testEntries(t *testing.T) map[string][]byte {
	t.Helper()
	files := map[string][]byte{
		SnapshotName:      fakeSnapshot(t, 8),
		ClusterConfigName: []byte("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: v1.34.4\n"),
	}
	for _, ca := range []string{"ca", "front-proxy-ca", "etcd/ca"} {
		files[PKIDir+ca+".crt"], files[PKIDir+ca+".key"] = caPair(t, ca)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	files[PKIDir+"sa.key"], _ = keyutil.MarshalPrivateKeyToPEM(k)
	files[PKIDir+"sa.pub"] = pubPEM(t, k)
	return files
}

func pubPEM(t *testing.T, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func writeBundle(t *testing.T, files map[string][]byte, s Secrets) []byte {
	t.Helper()
	var entries []Entry
	for _, n := range []string{SnapshotName, ClusterConfigName, PKIDir + "ca.crt", PKIDir + "ca.key", PKIDir + "front-proxy-ca.crt", PKIDir + "front-proxy-ca.key",
		PKIDir + "etcd/ca.crt", PKIDir + "etcd/ca.key", PKIDir + "sa.key", PKIDir + "sa.pub"} {
		if b, ok := files[n]; ok {
			entries = append(entries, Entry{Name: n, Size: int64(len(b)), Body: bytes.NewReader(b)})
		}
	}
	var out bytes.Buffer
	w, err := Seal(&out, s)
	if err != nil {
		t.Fatal(err)
	}
	m := Manifest{Cluster: "lab", Created: time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC), KubernetesVersion: "v1.34.4", EtcdVersion: "3.6.5",
		SnapshotRevision: 42, Members: []Member{{Name: "cp1", PeerURLs: []string{"https://10.0.0.1:2380"}}}}
	if _, err := Write(w, m, entries); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func verifyBytes(b []byte, s Secrets) (*Manifest, error) {
	r, err := Unseal(bytes.NewReader(b), s)
	if err != nil {
		return nil, err
	}
	return Verify(r)
}

func TestBundleRoundTrip(t *testing.T) {
	files := testEntries(t)
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		seal, open Secrets
	}{
		{"plain", Secrets{}, Secrets{}},
		{"passphrase", Secrets{Passphrase: []byte("correct horse")}, Secrets{Passphrase: []byte("correct horse")}},
		{"recipient", Secrets{Recipient: id.Recipient().String()}, Secrets{Identities: []byte("# key\n" + id.String() + "\n")}},
	} {
		b := writeBundle(t, files, tc.seal)
		if tc.name != "plain" && bytes.Contains(b, []byte("PRIVATE KEY")) {
			t.Errorf("%s: the encrypted bundle holds a PRIVATE KEY block in the clear", tc.name)
		}
		m, err := verifyBytes(b, tc.open)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if m.Cluster != "lab" || m.SnapshotRevision != 42 || len(m.Files) != 10 || m.Files[0].Name != SnapshotName || m.Files[0].Size != int64(len(files[SnapshotName])) {
			t.Errorf("%s: manifest %+v", tc.name, m)
		}
	}
}

func TestBundleSecrets(t *testing.T) {
	b := writeBundle(t, testEntries(t), Secrets{Passphrase: []byte("correct horse")})
	if _, err := verifyBytes(b, Secrets{}); !errors.Is(err, ErrEncrypted) {
		t.Errorf("no secret: %v, want ErrEncrypted", err)
	}
	if _, err := verifyBytes(b, Secrets{Passphrase: []byte("wrong horse")}); !errors.Is(err, ErrWrongSecret) {
		t.Errorf("wrong passphrase: %v, want ErrWrongSecret", err)
	}
	if _, err := Seal(io.Discard, Secrets{Passphrase: []byte("x"), Recipient: "age1..."}); err == nil {
		t.Error("a passphrase and a recipient together: no error")
	}
}

// A flipped byte anywhere is found, named by its entry when the bundle is
// plain, and refused by age's authentication when it is encrypted.
func TestBundleDamage(t *testing.T) {
	files := testEntries(t)
	plain := writeBundle(t, files, Secrets{})
	i := bytes.Index(plain, files[SnapshotName][100:140]) + 10
	flipped := bytes.Clone(plain)
	flipped[i] ^= 0x40
	if _, err := verifyBytes(flipped, Secrets{}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), SnapshotName+": sha256") {
		t.Errorf("a flipped byte in the snapshot: %v", err)
	}
	enc := writeBundle(t, files, Secrets{Passphrase: []byte("p")})
	enc[len(enc)/2] ^= 0x01
	if _, err := verifyBytes(enc, Secrets{Passphrase: []byte("p")}); err == nil || !errors.Is(err, ErrCorrupt) {
		t.Errorf("a flipped byte in an encrypted bundle: %v", err)
	}
	if _, err := verifyBytes(plain[:len(plain)/2], Secrets{}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a bundle cut in half: %v", err)
	}
	if _, err := verifyBytes([]byte("not a bundle at all, but long enough to look at"), Secrets{}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("not a bundle: %v", err)
	}
}

// Content that is whole but wrong: each reason names its entry.
func TestBundleContent(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(map[string][]byte)
		want   string
	}{
		{"another CA's key", func(f map[string][]byte) { _, f[PKIDir+"ca.key"] = caPair(t, "other") }, "pki/ca.crt: its key is not pki/ca.key"},
		{"sa.pub of another key", func(f map[string][]byte) {
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			f[PKIDir+"sa.pub"] = pubPEM(t, k)
		}, "pki/sa.pub: not the public half of pki/sa.key"},
		{"no etcd CA key", func(f map[string][]byte) { delete(f, PKIDir+"etcd/ca.key") }, "pki/etcd/ca.key: missing"},
		{"a snapshot without its trailer", func(f map[string][]byte) { f[SnapshotName] = f[SnapshotName][:512*8] }, "etcd/snapshot.db: no sha256 trailer"},
		{"a snapshot not matching its trailer", func(f map[string][]byte) { f[SnapshotName][5] ^= 1 }, "etcd/snapshot.db: sha256 of the database does not match"},
		{"not a ClusterConfiguration", func(f map[string][]byte) { f[ClusterConfigName] = []byte("kind: InitConfiguration\n") }, `kubeadm/cluster-configuration.yaml: kind "InitConfiguration"`},
		{"a garbled certificate", func(f map[string][]byte) {
			f[PKIDir+"front-proxy-ca.crt"] = []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
		}, "pki/front-proxy-ca.crt: "},
	} {
		files := testEntries(t)
		tc.change(files)
		_, err := verifyBytes(writeBundle(t, files, Secrets{}), Secrets{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestWriteRefusesNames(t *testing.T) {
	for _, n := range []string{"../etc/passwd", "/etc/passwd", "pki/../../x", ManifestName, ""} {
		if _, err := Write(io.Discard, Manifest{}, []Entry{{Name: n, Body: strings.NewReader("")}}); err == nil {
			t.Errorf("entry %q: no error", n)
		}
	}
	if _, err := Write(io.Discard, Manifest{}, []Entry{{Name: "a", Size: 5, Body: strings.NewReader("abc")}}); err == nil || !strings.Contains(err.Error(), "3 bytes, want 5") {
		t.Errorf("short body: %v", err)
	}
}

func TestLoadSecretsAndVerifyFile(t *testing.T) {
	dir := t.TempDir()
	pass := dir + "/pass"
	if err := os.WriteFile(pass, []byte("correct horse\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := LoadSecrets(pass, "", "")
	if err != nil || string(s.Passphrase) != "correct horse" {
		t.Fatalf("LoadSecrets: %q %v", s.Passphrase, err)
	}
	file := dir + "/b.kbb"
	if err := os.WriteFile(file, writeBundle(t, testEntries(t), s), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyFile(file, s); err != nil {
		t.Errorf("VerifyFile: %v", err)
	}
	if _, err := VerifyFile(file, Secrets{}); !errors.Is(err, ErrEncrypted) || !strings.Contains(err.Error(), file) {
		t.Errorf("VerifyFile without the passphrase: %v", err)
	}
	if err := os.Chmod(pass, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSecrets(pass, "", ""); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a passphrase file others can read: %v", err)
	}
	empty := dir + "/empty"
	os.WriteFile(empty, []byte("\n"), 0o600)
	if _, err := LoadSecrets(empty, "", ""); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("an empty passphrase file: %v", err)
	}
}

// writeVerified checks the stream as it writes it, even when only a
// recipient's identity could open the file, and leaves no file that does
// not verify.
func TestWriteVerified(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	entries := func(files map[string][]byte) []Entry {
		var es []Entry
		for _, n := range append([]string{SnapshotName, ClusterConfigName}, prefixed(RequiredPKI)...) {
			es = append(es, Entry{Name: n, Size: int64(len(files[n])), Body: bytes.NewReader(files[n])})
		}
		return es
	}
	m := Manifest{Cluster: "lab", KubernetesVersion: "v1.34.4", EtcdVersion: "3.6.5", Members: []Member{{Name: "cp1"}}}
	dir := t.TempDir()
	file := dir + "/ok.kbb"
	if _, err := writeVerified(file, Secrets{Recipient: id.Recipient().String()}, m, entries(testEntries(t))); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v %v", file, fi, err)
	}
	if _, err := VerifyFile(file, Secrets{Identities: []byte(id.String())}); err != nil {
		t.Errorf("the written bundle: %v", err)
	}
	bad := testEntries(t)
	bad[SnapshotName] = bad[SnapshotName][:512]
	file = dir + "/bad.kbb"
	if _, err := writeVerified(file, Secrets{Recipient: id.Recipient().String()}, m, entries(bad)); err == nil || !strings.Contains(err.Error(), "does not verify") || !strings.Contains(err.Error(), "no sha256 trailer") {
		t.Errorf("a snapshot without its trailer: %v", err)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a bundle that does not verify was left: %v", err)
	}
}

func prefixed(names []string) []string {
	var out []string
	for _, n := range names {
		out = append(out, PKIDir+n)
	}
	return out
}

// Open verifies and extracts in one pass: the snapshot written 0600, the
// PKI kept; a bundle that does not verify leaves no snapshot behind.
func TestOpen(t *testing.T) {
	dir := t.TempDir()
	files := testEntries(t)
	s := Secrets{Passphrase: []byte("correct horse")}
	file := dir + "/b.kbb"
	if err := os.WriteFile(file, writeBundle(t, files, s), 0o600); err != nil {
		t.Fatal(err)
	}
	snap := dir + "/snapshot.db"
	o, err := Open(file, s, snap)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(snap)
	if err != nil || !bytes.Equal(got, files[SnapshotName]) {
		t.Errorf("snapshot: %d bytes, %v; want the bundle's %d", len(got), err, len(files[SnapshotName]))
	}
	if fi, _ := os.Stat(snap); fi.Mode().Perm() != 0o600 {
		t.Errorf("snapshot mode %v, want 0600", fi.Mode().Perm())
	}
	if !bytes.Equal(o.PKI["ca.crt"], files[PKIDir+"ca.crt"]) || !bytes.Equal(o.PKI["etcd/ca.key"], files[PKIDir+"etcd/ca.key"]) || len(o.PKI) != len(RequiredPKI) {
		t.Errorf("PKI: %d files", len(o.PKI))
	}
	if o.Manifest.SnapshotRevision != 42 || o.Snapshot != snap {
		t.Errorf("opened: %+v", o)
	}

	bad := writeBundle(t, files, Secrets{})
	bad[len(bad)/3] ^= 1
	if err := os.WriteFile(file, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Remove(snap)
	if _, err := Open(file, Secrets{}, snap); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Open of a damaged bundle: %v, want ErrCorrupt", err)
	}
	if _, err := os.Stat(snap); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a damaged bundle left its snapshot: %v", err)
	}
	if _, err := Open(file, Secrets{Passphrase: []byte("x")}, snap); err == nil {
		t.Error("Open of a plain bundle given a passphrase: no error")
	}
}
