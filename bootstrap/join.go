package bootstrap

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/kubeadm"
	"github.com/kbootstrap/kbootstrap/node"
)

// caHashOnce reads ca.crt from the first control plane.
func (c *run) caHashOnce(ctx context.Context) (string, error) {
	if c.caHash != "" {
		return c.caHash, nil
	}
	b, err := c.nodes[c.first].ReadFile(ctx, kubeadm.CACert)
	if err != nil {
		return "", fmt.Errorf("node %s: %w", c.first, err)
	}
	h, err := CAHash(b)
	if err != nil {
		return "", fmt.Errorf("node %s: %s: %w", c.first, kubeadm.CACert, err)
	}
	c.caHash = h
	return h, nil
}

// newJoinToken creates a bootstrap token for joins: generated here,
// handed to kubeadm in a 0600 file.
func (c *run) newJoinToken(ctx context.Context, what string) (string, error) {
	token, err := NewToken()
	if err != nil {
		return "", err
	}
	c.addSecret(token)
	// `kubeadm token create` takes a chosen token only as an argument
	// (visible in ps): a Secret of type bootstrap.kubernetes.io/token applied
	// from stdin is the same thing, off every command line.
	id, secret, _ := strings.Cut(token, ".")
	exp := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	manifest := fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata:
  name: bootstrap-token-%s
  namespace: kube-system
type: bootstrap.kubernetes.io/token
stringData:
  description: %q
  token-id: %q
  token-secret: %q
  expiration: %q
  usage-bootstrap-authentication: "true"
  usage-bootstrap-signing: "true"
  auth-extra-groups: system:bootstrappers:kubeadm:default-node-token
`, id, "kbootstrap: "+what, id, secret, exp)
	if _, err := c.kubectl(ctx, "apply -f -", node.StdinString(manifest), node.HideOutput(), node.Redact(token, secret)); err != nil {
		return "", fmt.Errorf("bootstrap token for %s: %w", what, err)
	}
	return token, nil
}

// ensureCerts makes sure the kubeadm-certs Secret exists and was encrypted
// with c.certKey: uploaded again (same key) when kubeadm deleted it with its
// token, or with a new key when this run did not do the init.
func (c *run) ensureCerts(ctx context.Context) error {
	if c.certKey != "" {
		res, err := c.kubectl(ctx, "-n kube-system get secret "+certsSecret+" -o name --ignore-not-found")
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(res.Stdout)) != "" {
			return nil
		}
		c.status().Printf("• the %s Secret is gone (kubeadm deletes it after %s): uploading the certificates again", certsSecret, certsSecretTTL)
	} else {
		key, err := NewCertificateKey()
		if err != nil {
			return err
		}
		c.addSecret(key)
		c.certKey = key
	}
	in, _ := c.inv.Node(c.first)
	cfg, err := InitConfig(c.cluster, NodeParams{Name: c.first, Address: in.InternalIP()}, InitParams{CertificateKey: c.certKey})
	if err != nil {
		return err
	}
	path := ConfigDir + "/kubeadm-upload-certs.yaml"
	if err := c.writeSecretFile(ctx, c.first, path, cfg); err != nil {
		return err
	}
	defer c.removeSecretFile(ctx, c.first, path)
	_, err = c.kubeadm(ctx, c.first, "init phase upload-certs --upload-certs --config "+path, node.HideOutput())
	return err
}

// join runs kubeadm join on name with a JoinConfiguration in a 0600 file.
func (c *run) join(ctx context.Context, in inventory.Node, token string, controlPlane bool) error {
	hash, err := c.caHashOnce(ctx)
	if err != nil {
		return err
	}
	cfg, err := JoinConfig(c.cluster, NodeParams{Name: in.Name, Address: in.InternalIP()},
		JoinParams{Endpoint: c.endpoint, Token: token, CACertHash: hash, ControlPlane: controlPlane, CertificateKey: c.certKey})
	if err != nil {
		return err
	}
	path := ConfigDir + "/kubeadm-join.yaml"
	if err := c.writeSecretFile(ctx, in.Name, path, cfg); err != nil {
		return err
	}
	defer c.removeSecretFile(ctx, in.Name, path)
	_, err = c.kubeadmWatched(ctx, in.Name, "join --config "+path)
	return err
}
