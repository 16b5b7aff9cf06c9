package renew

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/kubeadm"
	"github.com/kbootstrap/kbootstrap/node"
	"github.com/kbootstrap/kbootstrap/pki"
	"github.com/kbootstrap/kbootstrap/report"
)

// verify checks that the node serves the certificates on disk, later than
// before where renewed, and that the audit finds no new failure.
func (o Options) verify(ctx context.Context, t *target, pre *pki.Result) error {
	var only []inventory.Node
	if o.Local == nil {
		only = []inventory.Node{t.in}
	}
	post, err := o.audit(ctx, only, -1)
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range post.Certificates {
		if !o.wanted(c.Name) {
			continue
		}
		for _, b := range pre.Certificates {
			if b.Name == c.Name && !c.NotAfter.After(b.NotAfter) {
				errs = append(errs, fmt.Errorf("%s: NotAfter %s, not later than before", c.Name, c.NotAfter.Format(time.RFC3339)))
			}
		}
	}
	old := map[string]bool{}
	for _, f := range pre.Findings.Findings {
		if f.Severity == report.Fail {
			old[f.Check+" "+f.File] = true
		}
	}
	for _, f := range post.Findings.Findings {
		if f.Severity == report.Fail && !old[f.Check+" "+f.File] {
			errs = append(errs, fmt.Errorf("audit: %s %s: %s", f.Check, f.File, f.Message))
		}
	}
	for _, s := range []struct{ file, addr string }{
		{"apiserver.crt", "127.0.0.1:6443"},
		{"etcd/server.crt", "127.0.0.1:2379"},
	} {
		if err := servesFile(ctx, t.n, kubeadm.PKIDir+"/"+s.file, s.addr); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// servesFile checks by a TLS handshake through the node that addr serves
// the certificate in file (same serial and NotAfter).
func servesFile(ctx context.Context, n node.Node, file, addr string) error {
	raw, err := n.ReadFile(ctx, file)
	if err != nil {
		return err
	}
	certs, err := pki.LoadCertificate(raw)
	if err != nil || len(certs) == 0 {
		return fmt.Errorf("%s: %v", file, err)
	}
	want := certs[0]
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := n.Dial(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("%s: %w", addr, err)
	}
	defer conn.Close()
	var got *x509.Certificate
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) > 0 {
			got, _ = x509.ParseCertificate(raw[0])
		}
		return nil
	}})
	herr := tc.HandshakeContext(ctx) // etcd may refuse us without a client certificate: its own was seen first
	if got == nil {
		return fmt.Errorf("%s: no certificate served: %v", addr, herr)
	}
	if got.SerialNumber.Cmp(want.SerialNumber) != 0 || !got.NotAfter.Equal(want.NotAfter) {
		return fmt.Errorf("%s serves a certificate expiring %s, not %s's (%s)", addr, got.NotAfter.Format(time.RFC3339), file, want.NotAfter.Format(time.RFC3339))
	}
	return nil
}

// verify is the "verify" step.
func (r *nodeRun) verify(ctx context.Context) error {
	st := r.o.Status.Start(r.t.name + ": verifying the served certificates and the audit")
	err := r.o.verify(ctx, r.t, r.pre)
	st.End(err)
	return err
}
