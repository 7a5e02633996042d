package main

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/mod/sumdb/note"
)

type treeHead struct {
	Size uint64 `json:"size"`
	Root []byte `json:"root"`
}

type verifyResult struct {
	OK          bool       `json:"ok"`
	Size        uint64     `json:"size"`
	Root        []byte     `json:"root"`
	Checkpoints []treeHead `json:"checkpoints"`
}

type verifyRefusal struct {
	OK      bool   `json:"ok"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

func cmdVerify(args []string, _ io.Reader) (any, error) {
	fs := newFlags("verify")
	dir := fs.requiredString("dir", "published log directory")
	vkey := fs.requiredString("verifier", "the log's checkpoint verifier key")
	var extra stringList
	fs.Var(&extra, "checkpoint", "an earlier checkpoint file of this log (repeatable)")
	entriesOut := fs.String("entries-out", "", "file to write every entry to, one JSON line each")
	if err := fs.parse(args); err != nil {
		return nil, err
	}
	v, err := parseVerifier(*vkey)
	if err != nil {
		return nil, err
	}
	res, err := verifyLog(*dir, v, extra, *entriesOut)
	var f *failure
	if errors.As(err, &f) && f.exit == exitRefused {
		return verifyRefusal{Reason: f.reason, Message: f.msg}, f
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// verifyLog recomputes the whole tree from the entry bundles and compares it with every
// checkpoint (the published one and the earlier ones given) and with the stored hash tiles.
func verifyLog(dir string, v note.Verifier, extra []string, entriesOut string) (*verifyResult, error) {
	heads, err := readHeads(v, append([]string{filepath.Join(dir, layout.CheckpointPath)}, extra...))
	if err != nil {
		return nil, err
	}
	size := heads[len(heads)-1].Size

	var out *entryWriter
	if entriesOut != "" {
		if out, err = newEntryWriter(entriesOut); err != nil {
			return nil, err
		}
		defer out.discard()
	}
	a := newAudit(heads)
	if err := a.checkRoots(); err != nil {
		return nil, err
	}
	for b := uint64(0); b*layout.EntryBundleWidth < size; b++ {
		entries, err := readBundle(dir, b, size)
		if err != nil {
			return nil, err
		}
		leaves := make([][]byte, len(entries))
		for i, e := range entries {
			leaves[i] = rfc6962.DefaultHasher.HashLeaf(e)
			if out != nil {
				out.add(b*layout.EntryBundleWidth+uint64(i), e)
			}
			if err := a.append(leaves[i]); err != nil {
				return nil, err
			}
		}
		a.compareTile(dir, 0, b, size, leaves)
	}
	for level := uint64(1); size>>(level*layout.TileHeight) > 0; level++ {
		nodes := a.levels[level]
		for t := uint64(0); t*layout.TileWidth < uint64(len(nodes)); t++ {
			a.compareTile(dir, level, t, size, nodes[t*layout.TileWidth:min(uint64(len(nodes)), (t+1)*layout.TileWidth)])
		}
	}
	// Roots first: entries that contradict a signed checkpoint are the graver finding; a bad tile
	// with good entries means the proofs served from it are wrong.
	if a.tileErr != nil {
		return nil, a.tileErr
	}
	if out != nil {
		if err := out.commit(); err != nil {
			return nil, err
		}
	}
	return &verifyResult{OK: true, Size: size, Root: heads[len(heads)-1].Root, Checkpoints: heads}, nil
}

// readHeads verifies every checkpoint file and returns their tree heads by ascending size, each
// distinct head once.
func readHeads(v note.Verifier, files []string) ([]treeHead, error) {
	var heads []treeHead
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading checkpoint: %w", err)
		}
		cp, err := openCheckpoint(raw, v, "unknown-signer")
		var fail *failure
		if errors.As(err, &fail) {
			return nil, &failure{fail.exit, fail.reason, f + ": " + fail.msg}
		}
		heads = append(heads, treeHead{Size: cp.Size, Root: cp.Hash})
	}
	slices.SortFunc(heads, func(a, b treeHead) int {
		if c := cmp.Compare(a.Size, b.Size); c != 0 {
			return c
		}
		return bytes.Compare(a.Root, b.Root)
	})
	// Two different roots for one size stay: the audit compares each with the recomputed root.
	return slices.CompactFunc(heads, func(a, b treeHead) bool { return a.Size == b.Size && bytes.Equal(a.Root, b.Root) }), nil
}

// audit grows a compact range leaf by leaf, checks the root at every checkpoint size, and keeps
// the nodes that higher hash tiles store (tree levels 8, 16, ...).
type audit struct {
	rf      *compact.RangeFactory
	cr      *compact.Range
	heads   []treeHead
	next    int                 // first head whose root is not checked yet
	levels  map[uint64][][]byte // tile level -> node hashes at tree level 8*tile level, by index
	tileErr error               // first tile mismatch, reported after the roots
	visit   compact.VisitFn
}

func newAudit(heads []treeHead) *audit {
	rf := &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	a := &audit{rf: rf, cr: rf.NewEmptyRange(0), heads: heads, levels: map[uint64][][]byte{}}
	a.visit = func(id compact.NodeID, h []byte) {
		if id.Level > 0 && id.Level%layout.TileHeight == 0 {
			l := uint64(id.Level / layout.TileHeight)
			a.levels[l] = append(a.levels[l], h)
		}
	}
	return a
}

func (a *audit) append(leaf []byte) error {
	if err := a.cr.Append(leaf, a.visit); err != nil {
		return err
	}
	return a.checkRoots()
}

// checkRoots compares the root of the range so far with every checkpoint of that size.
func (a *audit) checkRoots() error {
	for ; a.next < len(a.heads) && a.heads[a.next].Size == a.cr.End(); a.next++ {
		root := rfc6962.DefaultHasher.EmptyRoot()
		if a.cr.End() > 0 {
			var err error
			if root, err = a.cr.GetRootHash(nil); err != nil {
				return err
			}
		}
		if want := a.heads[a.next].Root; !bytes.Equal(root, want) {
			return refuse("root-mismatch", "size %d: the entries give root %s, the checkpoint says %s", a.cr.End(),
				base64.StdEncoding.EncodeToString(root), base64.StdEncoding.EncodeToString(want))
		}
	}
	return nil
}

// compareTile checks the stored hash tile (level, index) of a tree of the given size against
// the recomputed hashes, remembering the first mismatch.
func (a *audit) compareTile(dir string, level, index, size uint64, want [][]byte) {
	if a.tileErr != nil {
		return
	}
	p := layout.PartialTileSize(level, index, size)
	raw, path, err := readResource(dir, func(p uint8) string { return layout.TilePath(level, index, p) }, p)
	if err != nil {
		a.tileErr = refuse("tile-mismatch", "%v", err)
		return
	}
	n := len(raw) / sha256.Size
	if len(raw)%sha256.Size != 0 || n < len(want) || (n != len(want) && n != layout.TileWidth) {
		a.tileErr = refuse("tile-mismatch", "%s: %d bytes, want %d hashes", path, len(raw), len(want))
		return
	}
	for i, h := range want {
		if !bytes.Equal(raw[i*sha256.Size:(i+1)*sha256.Size], h) {
			a.tileErr = refuse("tile-mismatch", "%s: hash %d differs from the one recomputed from the entries", path, i)
			return
		}
	}
}

// readBundle returns the entries of bundle index that a tree of the given size holds.
func readBundle(dir string, index, size uint64) ([][]byte, error) {
	want := int(min(layout.EntryBundleWidth, size-index*layout.EntryBundleWidth))
	p := layout.PartialTileSize(0, index, size)
	raw, path, err := readResource(dir, func(p uint8) string { return layout.EntriesPath(index, p) }, p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, refuse("missing-bundle", "%v", err)
	}
	if err != nil {
		return nil, err
	}
	var bundle api.EntryBundle
	if err := bundle.UnmarshalText(raw); err != nil {
		return nil, refuse("malformed", "%s: %v", path, err)
	}
	n := len(bundle.Entries)
	if n < want || (n != want && n != layout.EntryBundleWidth) {
		return nil, refuse("malformed", "%s: %d entries, want %d", path, n, want)
	}
	return bundle.Entries[:want], nil
}

// readResource reads the tile or bundle with partial width p, or the full one when the partial
// one has been collected because the log grew (as Tessera's own readers do). It returns the path
// it read.
func readResource(dir string, path func(p uint8) string, p uint8) ([]byte, string, error) {
	rel := path(p)
	raw, err := os.ReadFile(filepath.Join(dir, rel))
	if errors.Is(err, os.ErrNotExist) && p > 0 {
		rel = path(0)
		raw, err = os.ReadFile(filepath.Join(dir, rel))
	}
	if errors.Is(err, os.ErrNotExist) {
		return nil, rel, fmt.Errorf("%s: missing: %w", path(p), os.ErrNotExist)
	}
	if err != nil {
		return nil, rel, fmt.Errorf("reading %s: %w", rel, err)
	}
	return raw, rel, nil
}

// entryWriter writes the --entries-out file: a temporary file renamed into place only when the
// whole log has verified.
type entryWriter struct {
	path string
	f    *os.File
	w    *bufio.Writer
	buf  []byte
	err  error
}

func newEntryWriter(path string) (*entryWriter, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("--entries-out: %w", err)
	}
	return &entryWriter{path: path, f: f, w: bufio.NewWriterSize(f, 1<<20)}, nil
}

func (e *entryWriter) add(index uint64, entry []byte) {
	e.buf = append(e.buf[:0], `{"index":`...)
	e.buf = strconv.AppendUint(e.buf, index, 10)
	e.buf = append(e.buf, `,"entry":"`...)
	e.buf = base64.StdEncoding.AppendEncode(e.buf, entry)
	e.buf = append(e.buf, "\"}\n"...)
	if _, err := e.w.Write(e.buf); err != nil && e.err == nil {
		e.err = err
	}
}

func (e *entryWriter) commit() error {
	err := e.err
	if err == nil {
		err = e.w.Flush()
	}
	if err == nil {
		err = e.f.Close()
	}
	if err == nil {
		err = os.Rename(e.f.Name(), e.path)
	}
	if err != nil {
		return fmt.Errorf("--entries-out %s: %w", e.path, err)
	}
	return nil
}

// discard removes the temporary file unless commit renamed it.
func (e *entryWriter) discard() {
	e.f.Close()
	_ = os.Remove(e.f.Name())
}
