package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

type keyResult struct {
	Origin   string `json:"origin"`
	Verifier string `json:"verifier"`
}

// noteKey is an Ed25519 signed-note key read from a private key file.
type noteKey struct {
	private  string // PRIVATE+KEY+<name>+<hash>+<base64>
	signer   note.Signer
	verifier string // <name>+<hash>+<base64>, the public half
}

func cmdKeygen(args []string, _ io.Reader) (any, error) {
	fs := newFlags("keygen")
	origin := fs.requiredString("origin", "log origin, used as the key name")
	out := fs.requiredString("private-out", "file to create with the private key (mode 0600)")
	if err := fs.parse(args); err != nil {
		return nil, err
	}
	if err := validOrigin(*origin); err != nil {
		return nil, usage("keygen: --origin: %v", err)
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, *origin)
	if err != nil {
		return nil, fmt.Errorf("generating a key: %w", err)
	}
	// O_EXCL: a key is never replaced, the log's identity depends on it.
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil, refuse("exists", "keygen: %s already exists; a key is never overwritten", *out)
	}
	if err != nil {
		return nil, fmt.Errorf("keygen: %w", err)
	}
	_, err = f.WriteString(skey + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(*out)
		return nil, fmt.Errorf("keygen: writing %s: %w", *out, err)
	}
	return keyResult{Origin: *origin, Verifier: vkey}, nil
}

func cmdPubkey(args []string, _ io.Reader) (any, error) {
	fs := newFlags("pubkey")
	priv := fs.requiredString("private", "private key file")
	if err := fs.parse(args); err != nil {
		return nil, err
	}
	k, err := loadKey(*priv)
	if err != nil {
		return nil, err
	}
	return keyResult{Origin: k.signer.Name(), Verifier: k.verifier}, nil
}

// validOrigin checks a C2SP tlog-checkpoint origin: non-empty printable ASCII without spaces
// or '+' (the signed-note key name separator), at most 255 bytes.
func validOrigin(origin string) error {
	if origin == "" || len(origin) > 255 {
		return fmt.Errorf("must be 1 to 255 bytes, got %d", len(origin))
	}
	for i := 0; i < len(origin); i++ {
		if c := origin[i]; c <= ' ' || c > '~' || c == '+' {
			return fmt.Errorf("byte %d (%q) is not allowed: printable ASCII without spaces or '+' expected", i, c)
		}
	}
	return nil
}

// loadKey reads an Ed25519 note private key and derives its verifier key.
func loadKey(path string) (*noteKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading key %s: %w", path, err)
	}
	skey := strings.TrimSpace(string(raw))
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, &failure{exitUsage, "bad-key", fmt.Sprintf("%s: not a signed-note private key: %v", path, err)}
	}
	if err := validOrigin(signer.Name()); err != nil {
		return nil, &failure{exitUsage, "bad-key", fmt.Sprintf("%s: key name is not a log origin: %v", path, err)}
	}
	// PRIVATE+KEY+<name>+<hash>+<base64(alg || seed)>; NewSigner accepted it, so the split holds.
	parts := strings.SplitN(skey, "+", 5)
	b, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(b) != 1+ed25519.SeedSize || b[0] != 1 {
		return nil, &failure{exitUsage, "bad-key", fmt.Sprintf("%s: not an Ed25519 signed-note private key", path)}
	}
	pub := ed25519.NewKeyFromSeed(b[1:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(signer.Name(), pub)
	if err != nil {
		return nil, fmt.Errorf("deriving the verifier key of %s: %w", path, err)
	}
	return &noteKey{private: skey, signer: signer, verifier: vkey}, nil
}

// parseVerifier reads a --verifier argument: an Ed25519 signed-note verifier key whose name is
// the log origin.
func parseVerifier(vkey string) (note.Verifier, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, &failure{exitUsage, "bad-key", fmt.Sprintf("--verifier: not a signed-note verifier key: %v", err)}
	}
	if err := validOrigin(v.Name()); err != nil {
		return nil, &failure{exitUsage, "bad-key", fmt.Sprintf("--verifier: key name is not a log origin: %v", err)}
	}
	return v, nil
}
