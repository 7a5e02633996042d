package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

const (
	maxWitnessInput = 1 << 20
	// A proof in a tree of at most 2^64 leaves has at most 64 hashes (consistency: one more).
	maxProofHashes = 65
)

// witnessInput is the request on stdin. Pointers tell a missing field from a zero value: every
// field is required.
type witnessInput struct {
	Checkpoint  *string   `json:"checkpoint"`
	Index       *uint64   `json:"index"`
	Entry       *string   `json:"entry"`
	Inclusion   *[]string `json:"inclusion"`
	From        *uint64   `json:"from"`
	Consistency *[]string `json:"consistency"`
}

type witnessResult struct {
	OK          bool   `json:"ok"`
	Size        uint64 `json:"size"`
	Root        []byte `json:"root"`
	Index       uint64 `json:"index"`
	Origin      string `json:"origin"`
	Cosignature string `json:"cosignature,omitempty"`
}

type witnessRefusal struct {
	OK      bool   `json:"ok"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
	Have    uint64 `json:"have"`
}

// alarmRecord is written to <state>.alarm when the log showed two views of its history.
type alarmRecord struct {
	Reason   string `json:"reason"`
	Message  string `json:"message"`
	Stored   string `json:"stored"`
	Received string `json:"received"`
	Time     string `json:"time"`
}

// request is a decoded witness request.
type request struct {
	raw         []byte // checkpoint note as received
	index       uint64
	entry       []byte
	inclusion   [][]byte
	from        uint64
	consistency [][]byte
}

// witness checks one request against the stored checkpoint; have is the stored size once known.
type witness struct {
	state    string
	verifier note.Verifier
	cosigner note.Signer
	have     uint64
}

func cmdWitness(args []string, stdin io.Reader) (any, error) {
	fs := newFlags("witness")
	state := fs.requiredString("state", "file holding the last accepted checkpoint")
	vkey := fs.requiredString("verifier", "the log's checkpoint verifier key")
	cosignKey := fs.String("cosign-key", "", "witness private key: also return a cosignature/v1 line")
	if err := fs.parse(args); err != nil {
		return nil, err
	}
	w := &witness{state: *state}
	var err error
	if w.verifier, err = parseVerifier(*vkey); err != nil {
		return nil, err
	}
	if *cosignKey != "" {
		k, err := loadKey(*cosignKey)
		if err != nil {
			return nil, err
		}
		if w.cosigner, err = fnote.NewSignerForCosignatureV1(k.private); err != nil {
			return nil, &failure{exitUsage, "bad-key", fmt.Sprintf("--cosign-key: %v", err)}
		}
	}
	// One witness decision at a time: two concurrent requests must not both be checked against
	// the same stored checkpoint, or the witness could accept both sides of a fork.
	unlock, err := lockFile(*state + ".lock")
	if err != nil {
		return nil, err
	}
	defer unlock()

	res, err := w.check(stdin)
	var f *failure
	if errors.As(err, &f) && f.exit == exitRefused {
		return witnessRefusal{Reason: f.reason, Message: f.msg, Have: w.have}, f
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (w *witness) check(stdin io.Reader) (*witnessResult, error) {
	alarm := w.state + ".alarm"
	if _, err := os.Stat(alarm); err == nil {
		return nil, refuse("alarm", "%s exists: this witness saw the log rewind or fork; an operator must inspect and remove it", alarm)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	req, err := readRequest(stdin)
	if err != nil {
		return nil, err
	}
	cp, err := openCheckpoint(req.raw, w.verifier, "bad-signature")
	if err != nil {
		return nil, err
	}
	storedRaw, stored, err := w.loadState()
	if err != nil {
		return nil, err
	}
	if stored != nil {
		w.have = stored.Size
		switch {
		case cp.Size < stored.Size:
			return nil, w.raise("rewind", fmt.Sprintf("checkpoint size %d is smaller than the accepted size %d", cp.Size, stored.Size), storedRaw, req.raw)
		case cp.Size == stored.Size && !bytes.Equal(cp.Hash, stored.Hash):
			return nil, w.raise("fork", fmt.Sprintf("checkpoint of size %d has another root than the accepted one", cp.Size), storedRaw, req.raw)
		case req.from != stored.Size:
			return nil, refuse("wrong-from", "consistency proof is from size %d, the accepted checkpoint has size %d", req.from, stored.Size)
		}
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, stored.Size, cp.Size, req.consistency, stored.Hash, cp.Hash); err != nil {
			msg := fmt.Sprintf("no consistency from the accepted size %d to %d: %v", stored.Size, cp.Size, err)
			return nil, w.raise("inconsistent", msg, storedRaw, req.raw)
		}
	} else {
		// Trust on first use: nothing to be consistent with.
		if req.from != 0 {
			return nil, refuse("wrong-from", "consistency proof is from size %d, this witness has no checkpoint yet (0)", req.from)
		}
		if len(req.consistency) != 0 {
			return nil, refuse("malformed", "consistency: must be empty from size 0")
		}
	}
	if req.index >= cp.Size {
		return nil, refuse("bad-inclusion", "index %d is not below the checkpoint size %d", req.index, cp.Size)
	}
	leaf := rfc6962.DefaultHasher.HashLeaf(req.entry)
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, req.index, cp.Size, leaf, req.inclusion, cp.Hash); err != nil {
		return nil, refuse("bad-inclusion", "entry at index %d is not included in the checkpoint: %v", req.index, err)
	}
	if stored == nil || cp.Size > stored.Size {
		if err := writeFileAtomic(w.state, req.raw, 0o600); err != nil {
			return nil, fmt.Errorf("storing the accepted checkpoint: %w", err)
		}
	}
	res := &witnessResult{OK: true, Size: cp.Size, Root: cp.Hash, Index: req.index, Origin: cp.Origin}
	if w.cosigner != nil {
		// The cosignature covers the checkpoint text, which ends at the blank line before the
		// signatures (note.Open accepted exactly this split).
		text := req.raw[:bytes.LastIndex(req.raw, []byte("\n\n"))+1]
		signed, err := note.Sign(&note.Note{Text: string(text)}, w.cosigner)
		if err != nil {
			return nil, fmt.Errorf("cosigning: %w", err)
		}
		res.Cosignature = string(signed[len(text)+1:])
	}
	return res, nil
}

// loadState reads the accepted checkpoint, re-verified with the log key; a state that does not
// verify is an operational fault, not a refusal of the request.
func (w *witness) loadState() ([]byte, *log.Checkpoint, error) {
	raw, err := os.ReadFile(w.state)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	cp, err := openCheckpoint(raw, w.verifier, "bad-signature")
	if err != nil {
		return nil, nil, &failure{exitIO, "state-corrupt", fmt.Sprintf("%s: %v", w.state, err)}
	}
	return raw, cp, nil
}

// raise records a sticky alarm and refuses: once the log has shown two histories, this witness
// refuses everything until an operator has looked.
func (w *witness) raise(reason, msg string, stored, received []byte) error {
	rec, err := json.MarshalIndent(alarmRecord{
		Reason: reason, Message: msg, Stored: string(stored), Received: string(received),
		Time: time.Now().UTC().Format(time.RFC3339),
	}, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(w.state+".alarm", append(rec, '\n'), 0o600); err != nil {
		return &failure{exitIO, "io", fmt.Sprintf("refused (%s: %s) but could not write the alarm: %v", reason, msg, err)}
	}
	return refuse(reason, "%s", msg)
}

func readRequest(stdin io.Reader) (*request, error) {
	body, err := io.ReadAll(io.LimitReader(stdin, maxWitnessInput+1))
	if err != nil {
		return nil, fmt.Errorf("reading stdin: %w", err)
	}
	if len(body) > maxWitnessInput {
		return nil, refuse("malformed", "stdin: more than %d bytes", maxWitnessInput)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var in witnessInput
	if err := dec.Decode(&in); err != nil {
		return nil, refuse("malformed", "stdin: %v", err)
	}
	if len(bytes.TrimSpace(body[dec.InputOffset():])) != 0 {
		return nil, refuse("malformed", "stdin: data after the JSON object")
	}
	for _, f := range []struct {
		name    string
		missing bool
	}{
		{"checkpoint", in.Checkpoint == nil}, {"index", in.Index == nil}, {"entry", in.Entry == nil},
		{"inclusion", in.Inclusion == nil}, {"from", in.From == nil}, {"consistency", in.Consistency == nil},
	} {
		if f.missing {
			return nil, refuse("malformed", "stdin: field %q is required", f.name)
		}
	}
	req := &request{raw: []byte(*in.Checkpoint), index: *in.Index, from: *in.From}
	if req.entry, err = base64.StdEncoding.Strict().DecodeString(*in.Entry); err != nil {
		return nil, refuse("malformed", "entry: not standard base64: %v", err)
	}
	if len(req.entry) > maxEntrySize {
		return nil, refuse("malformed", "entry: %d bytes, at most %d", len(req.entry), maxEntrySize)
	}
	if req.inclusion, err = decodeHashes("inclusion", *in.Inclusion); err != nil {
		return nil, err
	}
	if req.consistency, err = decodeHashes("consistency", *in.Consistency); err != nil {
		return nil, err
	}
	return req, nil
}

func decodeHashes(field string, b64 []string) ([][]byte, error) {
	if len(b64) > maxProofHashes {
		return nil, refuse("malformed", "%s: %d hashes, at most %d", field, len(b64), maxProofHashes)
	}
	hashes := make([][]byte, len(b64))
	for i, s := range b64 {
		h, err := base64.StdEncoding.Strict().DecodeString(s)
		if err != nil {
			return nil, refuse("malformed", "%s[%d]: not standard base64: %v", field, i, err)
		}
		if len(h) != sha256.Size {
			return nil, refuse("malformed", "%s[%d]: %d bytes, want %d", field, i, len(h), sha256.Size)
		}
		hashes[i] = h
	}
	return hashes, nil
}

// lockFile takes an exclusive lock on path (created if needed) until the returned func runs.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
