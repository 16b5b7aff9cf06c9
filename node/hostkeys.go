package node

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// HostKeyUnknownError is a host whose key is not in known_hosts.
type HostKeyUnknownError struct {
	Host           string // as written to known_hosts: host or [host]:port
	Key            ssh.PublicKey
	KnownHostsFile string
}

func (e *HostKeyUnknownError) Error() string {
	return fmt.Sprintf("host key of %s is unknown (%s %s) and not in %s: verify it, then rerun with --accept-new-host-keys to trust it on first use",
		e.Host, e.Key.Type(), ssh.FingerprintSHA256(e.Key), e.KnownHostsFile)
}

// HostKeyChangedError is a host whose key differs from the one recorded in
// known_hosts. It is never accepted: it is what a man in the middle looks
// like, and also what `vagrant destroy && vagrant up` looks like.
type HostKeyChangedError struct {
	Host           string
	Key            ssh.PublicKey
	KnownHostsFile string
	Line           int
}

func (e *HostKeyChangedError) Error() string {
	return fmt.Sprintf("HOST KEY CHANGED for %s: it now offers %s %s, which differs from %s:%d. "+
		"If the machine was rebuilt (e.g. vagrant destroy), remove the old key with:\n  ssh-keygen -f %q -R %q\nthen rerun with --accept-new-host-keys",
		e.Host, e.Key.Type(), ssh.FingerprintSHA256(e.Key), e.KnownHostsFile, e.Line, e.KnownHostsFile, e.Host)
}

// hostKeys checks host keys against one known_hosts file per file name,
// appending accepted new keys to it.
type hostKeys struct {
	mu        sync.Mutex
	acceptNew bool
	files     map[string]*knownHostsFile
}

type knownHostsFile struct {
	path     string
	callback ssh.HostKeyCallback // nil when the file does not exist yet
	added    map[string][]ssh.PublicKey
}

func newHostKeys(acceptNew bool) *hostKeys {
	return &hostKeys{acceptNew: acceptNew, files: map[string]*knownHostsFile{}}
}

func (h *hostKeys) file(path string) (*knownHostsFile, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if f, ok := h.files[path]; ok {
		return f, nil
	}
	f := &knownHostsFile{path: path, added: map[string][]ssh.PublicKey{}}
	if _, err := os.Stat(path); err == nil {
		cb, err := knownhosts.New(path)
		if err != nil {
			return nil, fmt.Errorf("known hosts %s: %w", path, err)
		}
		f.callback = cb
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("known hosts: %w", err)
	}
	h.files[path] = f
	return f, nil
}

// callback returns the HostKeyCallback for known_hosts file path.
func (h *hostKeys) callback(path string) (ssh.HostKeyCallback, error) {
	f, err := h.file(path)
	if err != nil {
		return nil, err
	}
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		host := knownhosts.Normalize(hostname)
		h.mu.Lock()
		for _, k := range f.added[host] {
			if string(k.Marshal()) == string(key.Marshal()) {
				h.mu.Unlock()
				return nil
			}
		}
		h.mu.Unlock()
		if f.callback != nil {
			err := f.callback(hostname, remote, key)
			var ke *knownhosts.KeyError
			switch {
			case err == nil:
				return nil
			case errors.As(err, &ke) && len(ke.Want) > 0:
				return &HostKeyChangedError{Host: host, Key: key, KnownHostsFile: f.path, Line: ke.Want[0].Line}
			case !errors.As(err, &ke):
				return err // revoked, or a malformed file
			}
		}
		if !h.acceptNew {
			return &HostKeyUnknownError{Host: host, Key: key, KnownHostsFile: f.path}
		}
		return h.append(f, host, key)
	}, nil
}

func (h *hostKeys) append(f *knownHostsFile, host string, key ssh.PublicKey) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(f.path), 0o700); err != nil {
		return fmt.Errorf("known hosts: %w", err)
	}
	out, err := os.OpenFile(f.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("known hosts: %w", err)
	}
	line := knownhosts.Line([]string{host}, key) + "\n"
	if _, err := out.WriteString(line); err != nil {
		out.Close()
		return fmt.Errorf("known hosts %s: %w", f.path, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("known hosts %s: %w", f.path, err)
	}
	f.added[host] = append(f.added[host], key)
	return nil
}

// algorithms returns the host key algorithms to ask host:port for, so that a
// server offering several key types is asked for the one we know. Nil means
// the library default (host unknown).
func (h *hostKeys) algorithms(path, hostport string) []string {
	f, err := h.file(path)
	if err != nil || f.callback == nil {
		return nil
	}
	// Asking the callback about a throwaway key makes it list the keys it
	// knows for the host.
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil
	}
	probe, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil
	}
	var ke *knownhosts.KeyError
	if err := f.callback(hostport, &net.TCPAddr{IP: net.IPv4zero}, probe); !errors.As(err, &ke) || len(ke.Want) == 0 {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	add := func(a string) {
		if !seen[a] {
			seen[a] = true
			algos = append(algos, a)
		}
	}
	for _, k := range ke.Want {
		t := k.Key.Type()
		if t == ssh.KeyAlgoRSA {
			add(ssh.KeyAlgoRSASHA512)
			add(ssh.KeyAlgoRSASHA256)
		}
		if strings.Contains(t, "-cert-") {
			continue
		}
		add(t)
	}
	return algos
}
