package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/kbootstrap/kbootstrap/inventory"
)

// PoolOptions configure the SSH connections of a run.
type PoolOptions struct {
	// AcceptNewHostKeys trusts unknown host keys on first use and appends
	// them to known_hosts. A changed key is refused regardless.
	AcceptNewHostKeys bool
	// ConnectTimeout bounds connecting to one node, retries included
	// (default 10 s).
	ConnectTimeout time.Duration
	// KeepAlive is the interval of keepalive requests (default 15 s).
	KeepAlive time.Duration
	// MaxSessions bounds the sessions open at once on one connection
	// (OpenSSH's MaxSessions defaults to 10; default 6 leaves room for the
	// SFTP session and for sessions sshd is still tearing down).
	MaxSessions int
	Logger      *slog.Logger
	Redactor    *Redactor
	// PassphrasePrompt asks for an encrypted key's passphrase when
	// KBOOTSTRAP_SSH_PASSPHRASE is not set; nil fails instead.
	PassphrasePrompt PassphrasePrompt
}

// Pool holds the one SSH connection per node of a run. It implements
// Connector.
type Pool struct {
	inv      *inventory.Inventory
	opts     PoolOptions
	hostKeys *hostKeys
	signers  *signers

	mu       sync.Mutex
	conns    map[string]*poolEntry // by node name
	bastions map[string]*poolEntry // by user@host:port
}

type poolEntry struct {
	once   sync.Once
	client *ssh.Client
	node   *SSHNode
	err    error
}

var _ Connector = (*Pool)(nil)

// NewPool returns an empty pool for inv.
func NewPool(inv *inventory.Inventory, opts PoolOptions) *Pool {
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 10 * time.Second
	}
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = 15 * time.Second
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = 6
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Pool{
		inv:      inv,
		opts:     opts,
		hostKeys: newHostKeys(opts.AcceptNewHostKeys),
		signers:  &signers{prompt: opts.PassphrasePrompt},
		conns:    map[string]*poolEntry{},
		bastions: map[string]*poolEntry{},
	}
}

// Connect returns the node's connection, dialing it on first use.
func (p *Pool) Connect(ctx context.Context, n inventory.Node) (Node, error) {
	p.mu.Lock()
	e, ok := p.conns[n.Name]
	if !ok {
		e = &poolEntry{}
		p.conns[n.Name] = e
	}
	p.mu.Unlock()
	e.once.Do(func() {
		s := p.inv.SSHFor(n)
		target := p.inv.SSHAddress(n)
		var client *ssh.Client
		client, e.err = p.dial(ctx, s, target)
		if e.err != nil {
			return
		}
		e.client = client
		e.node = newSSHNode(n.Name, s.User, client, p.opts)
		go keepAlive(client, p.opts.KeepAlive, p.opts.Logger.With("node", n.Name))
	})
	if e.err != nil {
		return nil, e.err
	}
	return e.node, nil
}

// Close closes every connection of the run.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for name, e := range p.conns {
		if e.node != nil {
			if err := e.node.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				errs = append(errs, fmt.Errorf("node %s: close: %w", name, err))
			}
		}
	}
	for _, e := range p.bastions {
		if e.client != nil {
			e.client.Close()
		}
	}
	p.signers.close()
	return errors.Join(errs...)
}

// dial connects to target (host:port), through the bastion when one is set,
// retrying connection errors (not authentication or host key errors) with
// backoff until ConnectTimeout.
func (p *Pool) dial(ctx context.Context, s inventory.SSH, target string) (*ssh.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.ConnectTimeout)
	defer cancel()
	cfg, err := p.clientConfig(s.User, s.KeyFile, s.KnownHostsFile, target)
	if err != nil {
		return nil, err
	}
	var via *ssh.Client
	if b := s.Bastion; b != nil {
		baddr := net.JoinHostPort(b.Address, strconv.Itoa(b.Port))
		via, err = p.bastion(ctx, b, s.KnownHostsFile, baddr)
		if err != nil {
			return nil, fmt.Errorf("bastion %s@%s: %w", b.User, baddr, err)
		}
	}
	what := fmt.Sprintf("connect %s@%s", s.User, target)
	if via != nil {
		what += " via bastion " + via.RemoteAddr().String()
	}
	client, err := retry(ctx, func(ctx context.Context) (*ssh.Client, error) {
		return handshake(ctx, via, target, cfg)
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return client, nil
}

func (p *Pool) bastion(ctx context.Context, b *inventory.Bastion, knownHosts, addr string) (*ssh.Client, error) {
	key := b.User + "@" + addr
	p.mu.Lock()
	e, ok := p.bastions[key]
	if !ok {
		e = &poolEntry{}
		p.bastions[key] = e
	}
	p.mu.Unlock()
	e.once.Do(func() {
		cfg, err := p.clientConfig(b.User, b.KeyFile, knownHosts, addr)
		if err != nil {
			e.err = err
			return
		}
		e.client, e.err = retry(ctx, func(ctx context.Context) (*ssh.Client, error) {
			return handshake(ctx, nil, addr, cfg)
		})
		if e.err == nil {
			go keepAlive(e.client, p.opts.KeepAlive, p.opts.Logger.With("bastion", addr))
		}
	})
	return e.client, e.err
}

func (p *Pool) clientConfig(user, keyFile, knownHosts, target string) (*ssh.ClientConfig, error) {
	auth, err := p.signers.authMethods(keyFile)
	if err != nil {
		return nil, err
	}
	cb, err := p.hostKeys.callback(knownHosts)
	if err != nil {
		return nil, err
	}
	return &ssh.ClientConfig{
		User:              user,
		Auth:              auth,
		HostKeyCallback:   cb,
		HostKeyAlgorithms: p.hostKeys.algorithms(knownHosts, target),
		Timeout:           p.opts.ConnectTimeout,
		ClientVersion:     "SSH-2.0-kbootstrap",
	}, nil
}

// handshake opens the TCP connection (directly, or as a channel of via) and
// runs the SSH handshake, all within ctx.
func handshake(ctx context.Context, via *ssh.Client, target string, cfg *ssh.ClientConfig) (*ssh.Client, error) {
	var conn net.Conn
	var err error
	if via != nil {
		conn, err = via.DialContext(ctx, "tcp", target)
	} else {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", target)
	}
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	// The handshake has no context: closing the connection when ctx ends
	// unblocks it.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	c, chans, reqs, err := ssh.NewClientConn(conn, target, cfg)
	if !stop() {
		if err == nil {
			c.Close()
		}
		conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// Retryable reports whether err is a transient connection error worth
// another attempt: refused, reset, unreachable, or a connection closed
// during the handshake (sshd's MaxStartups). Host key and authentication
// errors are not.
func Retryable(err error) bool {
	var changed *HostKeyChangedError
	var unknown *HostKeyUnknownError
	if errors.As(err, &changed) || errors.As(err, &unknown) {
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// retry calls f until it succeeds, fails with an error that is not
// Retryable, or ctx ends; the wait doubles from 200 ms.
func retry[T any](ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	wait := 200 * time.Millisecond
	var last error
	for attempt := 1; ; attempt++ {
		v, err := f(ctx)
		if err == nil {
			return v, nil
		}
		if last == nil || ctx.Err() == nil {
			last = err
		}
		if !Retryable(err) || ctx.Err() != nil {
			var zero T
			if ctx.Err() != nil && !errors.Is(last, ctx.Err()) {
				return zero, fmt.Errorf("%w (gave up after %d attempts: %w)", last, attempt, ctx.Err())
			}
			return zero, last
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			var zero T
			return zero, fmt.Errorf("%w (gave up after %d attempts: %w)", last, attempt, ctx.Err())
		case <-t.C:
		}
		wait = min(wait*2, 2*time.Second)
	}
}

// keepAlive sends keepalive@openssh.com requests; two unanswered in a row
// close the connection so that blocked calls fail instead of hanging.
func keepAlive(c *ssh.Client, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	missed := 0
	done := make(chan struct{})
	go func() { c.Wait(); close(done) }()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		reply := make(chan error, 1)
		go func() { _, _, err := c.SendRequest("keepalive@openssh.com", true, nil); reply <- err }()
		select {
		case err := <-reply:
			if err != nil {
				return
			}
			missed = 0
		case <-time.After(every):
			missed++
			if missed >= 2 {
				log.Warn("connection unresponsive, closing", "missed keepalives", missed)
				c.Close()
				return
			}
		case <-done:
			return
		}
	}
}
