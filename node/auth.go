package node

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/term"
)

// PassphraseEnv holds the passphrase of an encrypted SSH key for
// non-interactive runs (cron).
const PassphraseEnv = "KBOOTSTRAP_SSH_PASSPHRASE"

// PassphrasePrompt asks for the passphrase of an encrypted key file.
type PassphrasePrompt func(keyFile string) ([]byte, error)

// TerminalPassphrasePrompt prompts on out and reads from in when in is a
// terminal; otherwise it returns an error that names the environment
// variable to set.
func TerminalPassphrasePrompt(in *os.File, out io.Writer) PassphrasePrompt {
	return func(keyFile string) ([]byte, error) {
		if in == nil || !term.IsTerminal(int(in.Fd())) {
			return nil, fmt.Errorf("key %s is encrypted: set %s or use ssh-agent (no terminal to prompt on)", keyFile, PassphraseEnv)
		}
		fmt.Fprintf(out, "Enter passphrase for %s: ", keyFile)
		p, err := term.ReadPassword(int(in.Fd()))
		fmt.Fprintln(out)
		return p, err
	}
}

// signers loads key files once per run, and the agent's keys.
type signers struct {
	prompt PassphrasePrompt
	mu     sync.Mutex
	files  map[string]signerResult
	agent  agent.ExtendedAgent
	agentC net.Conn
}

type signerResult struct {
	signer ssh.Signer
	err    error
}

// defaultKeyFiles are tried, like ssh does, when no keyFile is configured.
var defaultKeyFiles = []string{"id_ed25519", "id_ecdsa", "id_rsa"}

func (s *signers) load(path string) (ssh.Signer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.files[path]; ok {
		return r.signer, r.err
	}
	sg, err := s.parse(path)
	if s.files == nil {
		s.files = map[string]signerResult{}
	}
	s.files[path] = signerResult{sg, err}
	return sg, err
}

func (s *signers) parse(path string) (ssh.Signer, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ssh key: %w", err)
	}
	sg, err := ssh.ParsePrivateKey(pem)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		pass := []byte(os.Getenv(PassphraseEnv))
		if len(pass) == 0 && s.prompt != nil {
			if pass, err = s.prompt(path); err != nil {
				return nil, err
			}
		}
		if len(pass) == 0 {
			return nil, fmt.Errorf("ssh key %s is encrypted: set %s or use ssh-agent", path, PassphraseEnv)
		}
		sg, err = ssh.ParsePrivateKeyWithPassphrase(pem, pass)
		clear(pass)
	}
	if err != nil {
		// The error of ParsePrivateKey never carries key material.
		return nil, fmt.Errorf("ssh key %s: %w", path, err)
	}
	return sg, nil
}

// authMethods returns public-key auth with keyFile (or ssh's default key
// files when empty) followed by the agent's keys when SSH_AUTH_SOCK is set.
func (s *signers) authMethods(keyFile string) ([]ssh.AuthMethod, error) {
	var keys []ssh.Signer
	if keyFile != "" {
		sg, err := s.load(keyFile)
		if err != nil {
			return nil, err
		}
		keys = append(keys, sg)
	} else if home, err := os.UserHomeDir(); err == nil {
		for _, name := range defaultKeyFiles {
			p := filepath.Join(home, ".ssh", name)
			if _, err := os.Stat(p); err != nil {
				continue
			}
			if sg, err := s.load(p); err == nil {
				keys = append(keys, sg)
			}
		}
	}
	ag := s.agentClient()
	if len(keys) == 0 && ag == nil {
		return nil, errors.New("no SSH key: set ssh.keyFile in the inventory, or start ssh-agent (SSH_AUTH_SOCK)")
	}
	return []ssh.AuthMethod{ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
		all := append([]ssh.Signer(nil), keys...)
		if ag != nil {
			if more, err := ag.Signers(); err == nil {
				all = append(all, more...)
			}
		}
		return all, nil
	})}, nil
}

func (s *signers) agentClient() agent.ExtendedAgent {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.agent != nil {
		return s.agent
	}
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock == "" {
		return nil
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		return nil
	}
	s.agentC = c
	s.agent = agent.NewClient(c)
	return s.agent
}

func (s *signers) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.agentC != nil {
		s.agentC.Close()
	}
}
