package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
)

type proveResult struct {
	Checkpoint  string              `json:"checkpoint"`
	Size        uint64              `json:"size"`
	Root        []byte              `json:"root"`
	Inclusion   map[string][][]byte `json:"inclusion"`
	Entries     map[string][]byte   `json:"entries"`
	From        *uint64             `json:"from,omitempty"`
	Consistency *[][]byte           `json:"consistency,omitempty"`
}

func cmdProve(args []string, _ io.Reader) (any, error) {
	fs := newFlags("prove")
	dir := fs.requiredString("dir", "log directory")
	var indices uintList
	fs.Var(&indices, "index", "leaf index to prove inclusion of (repeatable)")
	var from optionalUint
	fs.Var(&from, "from", "tree size to prove consistency from")
	if err := fs.parse(args); err != nil {
		return nil, err
	}
	ctx := context.Background()

	// The latest published checkpoint of our own log: nothing to verify, only its size and root
	// are used, and every proof is built for exactly that size.
	raw, err := os.ReadFile(filepath.Join(*dir, layout.CheckpointPath))
	if err != nil {
		return nil, fmt.Errorf("reading the checkpoint: %w", err)
	}
	cp, err := parseUnverifiedCheckpoint(raw)
	if err != nil {
		return nil, fmt.Errorf("%s/checkpoint: %w", *dir, err)
	}
	// FileFetcher falls back to the full tile or bundle when a partial one was collected after
	// the log grew past this checkpoint.
	fetch := client.FileFetcher{Root: *dir}
	pb, err := client.NewProofBuilder(ctx, cp.Size, fetch.ReadTile)
	if err != nil {
		return nil, err
	}
	res := &proveResult{
		Checkpoint: string(raw), Size: cp.Size, Root: cp.Hash,
		Inclusion: map[string][][]byte{}, Entries: map[string][]byte{},
	}
	for _, i := range indices {
		if i >= cp.Size {
			return nil, refuse("out-of-range", "--index %d: the published checkpoint has %d entries", i, cp.Size)
		}
		bundle, err := client.GetEntryBundle(ctx, fetch.ReadEntryBundle, i/layout.EntryBundleWidth, cp.Size)
		if err != nil {
			return nil, err
		}
		if uint64(len(bundle.Entries)) <= i%layout.EntryBundleWidth {
			msg := fmt.Sprintf("entry bundle %d has %d entries, index %d is missing", i/layout.EntryBundleWidth, len(bundle.Entries), i)
			return nil, &failure{exitIO, "corrupt", msg}
		}
		entry := bundle.Entries[i%layout.EntryBundleWidth]
		p, err := pb.InclusionProof(ctx, i)
		if err != nil {
			return nil, fmt.Errorf("inclusion proof for %d: %w", i, err)
		}
		// A proof that cannot verify would only be refused later by a witness; say here that the
		// files on disk are damaged.
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, i, cp.Size, rfc6962.DefaultHasher.HashLeaf(entry), p, cp.Hash); err != nil {
			return nil, &failure{exitIO, "corrupt", fmt.Sprintf("entry %d does not verify against the checkpoint: %v", i, err)}
		}
		k := strconv.FormatUint(i, 10)
		res.Inclusion[k], res.Entries[k] = nonNil(p), entry
	}
	if from.set {
		if from.v > cp.Size {
			return nil, refuse("out-of-range", "--from %d: the published checkpoint has %d entries", from.v, cp.Size)
		}
		p, err := pb.ConsistencyProof(ctx, from.v, cp.Size)
		if err != nil {
			return nil, fmt.Errorf("consistency proof from %d: %w", from.v, err)
		}
		p = nonNil(p)
		res.From, res.Consistency = &from.v, &p
	}
	return res, nil
}

// nonNil makes an empty proof encode as [] rather than null.
func nonNil(p [][]byte) [][]byte {
	if p == nil {
		return [][]byte{}
	}
	return p
}
