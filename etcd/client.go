package etcd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/kbootstrap/kbootstrap/node"
)

// DefaultTimeout bounds every etcd call that is not a stream: a dead etcd is
// an error within this time.
const DefaultTimeout = 15 * time.Second

// Client is an etcd v3 client whose connections go through one node, with the
// kube-apiserver's credentials.
type Client struct {
	*clientv3.Client
	node      string
	endpoints []string
	timeout   time.Duration
	dial      func(ctx context.Context, addr string) (net.Conn, error)
	tls       *tls.Config
}

// ClientOptions tune Connect.
type ClientOptions struct {
	// Timeout bounds each call (and dialling); 0 means DefaultTimeout.
	Timeout time.Duration
	// Endpoints overrides the flags' endpoints (e.g. one member for a
	// snapshot).
	Endpoints []string
}

// Credentials are the PEM bytes of a client's CA, certificate and key, held
// in memory only.
type Credentials struct {
	CA, Cert, Key []byte
}

// ReadCredentials reads the three files named by f from n (through sudo) into
// memory.
func ReadCredentials(ctx context.Context, n node.Node, f ClientFlags) (Credentials, error) {
	n = node.Sudo(n)
	var c Credentials
	for _, it := range []struct {
		path string
		dst  *[]byte
		what string
	}{{f.CACert, &c.CA, "--etcd-cafile"}, {f.Cert, &c.Cert, "--etcd-certfile"}, {f.Key, &c.Key, "--etcd-keyfile"}} {
		if it.path == "" {
			return c, fmt.Errorf("node %s: %s is not set", n.Name(), it.what)
		}
		b, err := n.ReadFile(ctx, it.path)
		if err != nil {
			return c, fmt.Errorf("node %s: read %s %s: %w", n.Name(), it.what, it.path, err)
		}
		*it.dst = b
	}
	return c, nil
}

// TLSConfig builds a client TLS configuration: the server must present a
// certificate from CA, and the client presents Cert/Key. ServerName is left
// empty: gRPC sets it per endpoint from the endpoint's host.
func (c Credentials) TLSConfig() (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(c.CA) {
		return nil, errors.New("the etcd CA file holds no PEM certificate")
	}
	pair, err := tls.X509KeyPair(c.Cert, c.Key)
	if err != nil {
		// The error of X509KeyPair never quotes key material.
		return nil, fmt.Errorf("etcd client certificate and key: %w", err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

// Connect returns a client reaching f's endpoints from n's side of the
// network, with the credentials read from n. Close it.
func Connect(ctx context.Context, n node.Node, f ClientFlags, opts ClientOptions) (*Client, error) {
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	rctx, cancel := context.WithTimeout(ctx, 2*timeout)
	defer cancel()
	creds, err := ReadCredentials(rctx, n, f)
	if err != nil {
		return nil, err
	}
	tc, err := creds.TLSConfig()
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", n.Name(), err)
	}
	eps := opts.Endpoints
	if len(eps) == 0 {
		eps = f.Endpoints
	}
	return NewClient(n, eps, tc, timeout)
}

// NewClient returns a client for endpoints dialled through n with TLS
// configuration tc (nil for plain http endpoints).
func NewClient(n node.Node, endpoints []string, tc *tls.Config, timeout time.Duration) (*Client, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if len(endpoints) == 0 {
		return nil, fmt.Errorf("node %s: no etcd endpoint", n.Name())
	}
	for _, ep := range endpoints {
		if _, err := ParseEndpoint(ep); err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Name(), err)
		}
	}
	dialer := func(ctx context.Context, addr string) (net.Conn, error) {
		conn, err := n.Dial(ctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("node %s: dial %s: %w", n.Name(), addr, err)
		}
		return conn, nil
	}
	dopts := []grpc.DialOption{
		grpc.WithContextDialer(dialer),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(newChunkCodec())),
		// Fixed flow-control windows instead of gRPC's BDP estimate, which
		// stays small across the SSH hop: etcd then sends a snapshot in
		// fewer, larger writes. They bound what gRPC may buffer (8 MiB).
		grpc.WithInitialWindowSize(4 << 20),
		grpc.WithInitialConnWindowSize(8 << 20),
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            endpoints,
		TLS:                  tc,
		DialTimeout:          timeout,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: timeout,
		Logger:               zap.NewNop(),
		DialOptions:          dopts,
		MaxCallRecvMsgSize:   64 << 20,
	})
	if err != nil {
		return nil, fmt.Errorf("node %s: etcd client for %v: %w", n.Name(), endpoints, err)
	}
	return &Client{Client: cli, node: n.Name(), endpoints: endpoints, timeout: timeout, dial: dialer, tls: tc}, nil
}

// Node is the node the client goes through.
func (c *Client) Node() string { return c.node }

// ClientEndpoints are the endpoints the client was built for.
func (c *Client) ClientEndpoints() []string { return c.endpoints }

// call runs one bounded etcd call and names the node and endpoints in its
// error.
func (c *Client) call(ctx context.Context, what string, f func(ctx context.Context) error) error {
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if err := f(cctx); err != nil {
		if cctx.Err() != nil && ctx.Err() == nil {
			return fmt.Errorf("node %s: etcd %s at %v: no answer within %s (%s): %w", c.node, what, c.endpoints, c.timeout, c.diagnose(ctx), err)
		}
		return fmt.Errorf("node %s: etcd %s at %v: %w", c.node, what, c.endpoints, err)
	}
	return nil
}

// diagnose says why the endpoints did not answer (gRPC only reports the
// deadline): each is dialled from the node and, for https, handshaken with
// the client's TLS configuration.
func (c *Client) diagnose(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var out []string
	for _, raw := range c.endpoints {
		ep, err := ParseEndpoint(raw)
		if err != nil {
			out = append(out, err.Error())
			continue
		}
		conn, err := c.dial(ctx, ep.HostPort)
		if err != nil {
			if u := errors.Unwrap(err); u != nil {
				err = u // drop the "node X: dial" prefix: the message names them
			}
			out = append(out, fmt.Sprintf("%s: %v", raw, err))
			continue
		}
		msg := raw + ": TCP connects"
		if ep.Scheme == "https" && c.tls != nil {
			cfg := c.tls.Clone()
			cfg.ServerName = ep.ServerName
			tc := tls.Client(conn, cfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				msg = fmt.Sprintf("%s: TLS: %v", raw, err)
			} else {
				msg = raw + ": TLS handshake succeeds, etcd does not answer (no quorum?)"
			}
		}
		conn.Close()
		out = append(out, msg)
	}
	return strings.Join(out, "; ")
}
