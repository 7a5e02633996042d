package main

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
)

// openCheckpoint checks that raw is a checkpoint signed by v whose origin is v's name, and parses
// it. Its failures carry the reason codes of witness and verify; unknownSigner is the reason used
// when the note has no signature by v at all.
func openCheckpoint(raw []byte, v note.Verifier, unknownSigner string) (*log.Checkpoint, error) {
	n, err := note.Open(raw, note.VerifierList(v))
	var unverified *note.UnverifiedNoteError
	var invalid *note.InvalidSignatureError
	switch {
	case errors.As(err, &unverified):
		var by []string
		for _, s := range unverified.Note.UnverifiedSigs {
			by = append(by, fmt.Sprintf("%s+%08x", s.Name, s.Hash))
		}
		return nil, refuse(unknownSigner, "checkpoint has no signature by %s+%08x (signed by %v)", v.Name(), v.KeyHash(), by)
	case errors.As(err, &invalid):
		return nil, refuse("bad-signature", "the signature by %s+%08x does not verify", invalid.Name, invalid.Hash)
	case err != nil:
		return nil, refuse("malformed", "checkpoint is not a signed note: %v", err)
	}
	cp, _, _, err := log.ParseCheckpoint(raw, v.Name(), v)
	if err != nil {
		var c log.Checkpoint
		if _, uerr := c.Unmarshal([]byte(n.Text)); uerr == nil && c.Origin != v.Name() {
			return nil, refuse("wrong-origin", "checkpoint origin %q is not the log key's name %q", c.Origin, v.Name())
		}
		return nil, refuse("malformed", "checkpoint body: %v", err)
	}
	if len(cp.Hash) != sha256.Size {
		return nil, refuse("malformed", "checkpoint root hash has %d bytes, want %d", len(cp.Hash), sha256.Size)
	}
	return cp, nil
}

// parseUnverifiedCheckpoint reads the body of a checkpoint note without checking signatures;
// only for the log's own checkpoint file.
func parseUnverifiedCheckpoint(raw []byte) (*log.Checkpoint, error) {
	split := bytes.LastIndex(raw, []byte("\n\n"))
	if split < 0 {
		return nil, errors.New("not a signed note (no blank line before the signatures)")
	}
	var cp log.Checkpoint
	if _, err := cp.Unmarshal(raw[:split+1]); err != nil {
		return nil, err
	}
	if len(cp.Hash) != sha256.Size {
		return nil, fmt.Errorf("root hash has %d bytes, want %d", len(cp.Hash), sha256.Size)
	}
	return &cp, nil
}

// writeFileAtomic replaces path with data so that a crash leaves either the old or the new
// content: temporary file, fsync, rename, fsync of the directory.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }() // fails harmlessly once renamed
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(perm)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}
