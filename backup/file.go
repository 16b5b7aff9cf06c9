package backup

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/kbootstrap/kbootstrap/internal/atomicfile"
)

// LoadSecrets reads the secrets a command was pointed at: a passphrase
// file (its content, one trailing newline dropped), an age identity file,
// and a recipient (a public key, given as is). The secrets themselves never
// come from a command line; a passphrase file readable by group or others
// is refused, as ssh refuses such a private key.
func LoadSecrets(passphraseFile, identityFile, recipient string) (Secrets, error) {
	var s Secrets
	if passphraseFile != "" {
		fi, err := os.Stat(passphraseFile)
		if err != nil {
			return s, fmt.Errorf("--passphrase-file: %w", err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return s, fmt.Errorf("--passphrase-file %s: mode %04o lets others read it (chmod 600)", passphraseFile, fi.Mode().Perm())
		}
		b, err := os.ReadFile(passphraseFile)
		if err != nil {
			return s, fmt.Errorf("--passphrase-file: %w", err)
		}
		b = bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r"))
		if len(b) == 0 {
			return s, fmt.Errorf("--passphrase-file %s: empty", passphraseFile)
		}
		s.Passphrase = b
	}
	if identityFile != "" {
		b, err := os.ReadFile(identityFile)
		if err != nil {
			return s, fmt.Errorf("--identity: %w", err)
		}
		s.Identities = b
	}
	s.Recipient = recipient
	if len(s.Passphrase) > 0 && s.Recipient != "" {
		return s, errors.New("give --passphrase-file or --recipient, not both")
	}
	return s, nil
}

// VerifyFile opens a bundle file (decrypting it with s when it is
// encrypted) and verifies it whole.
func VerifyFile(file string, s Secrets) (*Manifest, error) {
	var m *Manifest
	err := readFile(file, s, func(r io.Reader) (err error) {
		m, err = Verify(r)
		return err
	})
	return m, err
}

// readFile hands read the plain stream of bundle file (decrypted with s);
// errors name the file.
func readFile(file string, s Secrets, read func(io.Reader) error) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := Unseal(f, s)
	if err == nil {
		err = read(r)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return nil
}

// Opened is a verified bundle ready to be restored.
type Opened struct {
	Manifest *Manifest
	// PKI holds the bundle's files of /etc/kubernetes/pki by their path
	// there ("ca.crt", "etcd/ca.key").
	PKI map[string][]byte
	// ClusterConfiguration is kubeadm's, as the kubeadm-config ConfigMap
	// held it.
	ClusterConfiguration []byte
	// Snapshot is the file the etcd snapshot was written to.
	Snapshot string
}

// Open verifies a bundle file whole (as VerifyFile) and, in the same pass,
// writes its etcd snapshot to snapshot (mode 0600, atomically: only a
// bundle that verifies leaves it there) and keeps its PKI in memory.
func Open(file string, s Secrets, snapshot string) (*Opened, error) {
	var (
		m     *Manifest
		small map[string][]byte
	)
	err := readFile(file, s, func(r io.Reader) error {
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() {
			var err error
			m, small, err = verify(r, pw)
			pw.CloseWithError(err)
			done <- err
		}()
		werr := atomicfile.Write(snapshot, pr, atomicfile.Options{Mode: 0o600})
		pr.CloseWithError(werr)
		if err := <-done; err != nil {
			os.Remove(snapshot)
			return err
		}
		return werr
	})
	if err != nil {
		return nil, err
	}
	o := &Opened{Manifest: m, PKI: map[string][]byte{}, ClusterConfiguration: small[ClusterConfigName], Snapshot: snapshot}
	for name, b := range small {
		if p, ok := strings.CutPrefix(name, PKIDir); ok {
			o.PKI[p] = b
		}
	}
	return o, nil
}
