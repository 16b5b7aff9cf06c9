package backup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"filippo.io/age"
)

// Secrets say how a bundle is encrypted or opened: a passphrase (age's
// scrypt recipient), or an age recipient to encrypt to and an identity file's
// content to open with. They come from files, never from a command line.
type Secrets struct {
	Passphrase []byte
	// Recipient is an age public key (age1...), for encrypting.
	Recipient string
	// Identities is the content of an age identity file, for opening.
	Identities []byte
}

// encrypted reports whether any secret asks for encryption.
func (s Secrets) encrypting() bool { return len(s.Passphrase) > 0 || s.Recipient != "" }

// ageHeader starts every age file.
const ageHeader = "age-encryption.org/v1\n"

// Errors of opening a bundle.
var (
	ErrEncrypted   = errors.New("the bundle is encrypted: give --passphrase-file or --identity")
	ErrWrongSecret = errors.New("the passphrase or identity does not open this bundle")
)

// Seal returns the writer a bundle is written to: w itself, or an age
// encrypting writer over it (Close it to finish the file; it does not close
// w).
func Seal(w io.Writer, s Secrets) (io.WriteCloser, error) {
	if !s.encrypting() {
		return nopCloser{w}, nil
	}
	if len(s.Passphrase) > 0 && s.Recipient != "" {
		return nil, errors.New("give a passphrase or a recipient, not both")
	}
	var r age.Recipient
	if len(s.Passphrase) > 0 {
		sr, err := age.NewScryptRecipient(string(s.Passphrase))
		if err != nil {
			return nil, fmt.Errorf("passphrase: %w", err)
		}
		r = sr
	} else {
		xr, err := age.ParseX25519Recipient(strings.TrimSpace(s.Recipient))
		if err != nil {
			return nil, fmt.Errorf("recipient: %w", err)
		}
		r = xr
	}
	return age.Encrypt(w, r)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// Unseal returns the bundle's plain stream from r: r itself when it is not
// encrypted, else decrypted with the passphrase or identities of s.
func Unseal(r io.Reader, s Secrets) (io.Reader, error) {
	br := bufio.NewReader(r)
	head, err := br.Peek(len(ageHeader))
	if err != nil || !bytes.Equal(head, []byte(ageHeader)) {
		return br, nil // not age: Visit says what it is
	}
	var ids []age.Identity
	if len(s.Passphrase) > 0 {
		id, err := age.NewScryptIdentity(string(s.Passphrase))
		if err != nil {
			return nil, fmt.Errorf("passphrase: %w", err)
		}
		ids = append(ids, id)
	}
	if len(s.Identities) > 0 {
		parsed, err := age.ParseIdentities(bytes.NewReader(s.Identities))
		if err != nil {
			return nil, fmt.Errorf("identity file: %w", err)
		}
		ids = append(ids, parsed...)
	}
	if len(ids) == 0 {
		return nil, ErrEncrypted
	}
	pr, err := age.Decrypt(br, ids...)
	if err != nil {
		var nm *age.NoIdentityMatchError
		if errors.As(err, &nm) {
			return nil, ErrWrongSecret
		}
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return pr, nil
}
