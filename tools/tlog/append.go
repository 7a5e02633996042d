package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"
)

const (
	// maxEntrySize is the largest entry tlog-tiles can hold: bundles prefix each entry with a
	// 16-bit length.
	maxEntrySize     = tessera.DefaultEntrySizeLimit
	maxEntriesPerRun = 10000

	// append hands all its entries to Tessera as one batch, flushed the moment the last one is
	// added: one sequencing step, so a killed append leaves all of its entries or none. The age
	// limit is never what flushes it; it only has to outlast adding 10,000 entries.
	appendBatchMaxAge = time.Second
	// bench-append flushes its last, partial batch after this.
	benchBatchMaxAge = 5 * time.Millisecond
	// The smallest interval Tessera's POSIX driver accepts; a checkpoint older than this is
	// replaced as soon as the tree grows, so a single append is published at once.
	checkpointInterval = 100 * time.Millisecond
	// Each append is a short process: collecting obsolete partial tiles and bundles often means
	// most runs do some of it, instead of none (Tessera's default is once a minute).
	gcInterval = 10 * time.Millisecond
	// How often the published checkpoint is polled while waiting for it to cover our entries.
	publishPoll = 2 * time.Millisecond
	// Upper bound for one append, from opening the log to the published checkpoint.
	appendTimeout = 60 * time.Second
)

type appendResult struct {
	Indices    []uint64 `json:"indices"`
	Size       uint64   `json:"size"`
	Root       []byte   `json:"root"`
	Checkpoint string   `json:"checkpoint"`
}

func cmdAppend(args []string, stdin io.Reader) (any, error) {
	fs := newFlags("append")
	dir := fs.requiredString("dir", "log directory")
	priv := fs.requiredString("private", "log private key file")
	if err := fs.parse(args); err != nil {
		return nil, err
	}
	key, err := loadKey(*priv)
	if err != nil {
		return nil, err
	}
	// Everything is read and checked before the log is opened: bad input appends nothing.
	entries, err := readEntries(stdin)
	if err != nil {
		return nil, err
	}
	if err := checkOwnLog(*dir, key); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), appendTimeout)
	defer cancel()
	return appendEntries(ctx, *dir, key, entries, uint(max(len(entries), 1)), appendBatchMaxAge)
}

// checkOwnLog refuses to extend an existing log whose published checkpoint this key did not
// sign: the next checkpoint would silently change the log's identity.
func checkOwnLog(dir string, key *noteKey) error {
	raw, err := os.ReadFile(filepath.Join(dir, layout.CheckpointPath))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the published checkpoint: %w", err)
	}
	v, err := note.NewVerifier(key.verifier)
	if err != nil {
		return err
	}
	if _, err := openCheckpoint(raw, v, "wrong-key"); err != nil {
		var f *failure
		if errors.As(err, &f) {
			return refuse("wrong-key", "%s/checkpoint is not this key's: %s", dir, f.msg)
		}
		return err
	}
	return nil
}

// readEntries reads newline-terminated entries from r: no empty line, none longer than
// maxEntrySize, at most maxEntriesPerRun, and the last line terminated.
func readEntries(r io.Reader) ([][]byte, error) {
	br := bufio.NewReaderSize(r, maxEntrySize+2)
	var entries [][]byte
	for line := 1; ; line++ {
		b, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull) || len(b) > maxEntrySize+1:
			return nil, refuse("malformed", "stdin line %d: entry longer than %d bytes", line, maxEntrySize)
		case errors.Is(err, io.EOF) && len(b) > 0:
			return nil, refuse("malformed", "stdin line %d: not terminated by a newline (truncated input?)", line)
		case errors.Is(err, io.EOF):
			return entries, nil
		case err != nil:
			return nil, fmt.Errorf("reading stdin: %w", err)
		case len(b) == 1:
			return nil, refuse("malformed", "stdin line %d: empty entry", line)
		case line > maxEntriesPerRun:
			return nil, refuse("malformed", "stdin: more than %d entries", maxEntriesPerRun)
		}
		entries = append(entries, bytes.Clone(b[:len(b)-1]))
	}
}

// openAppender opens (or creates) the POSIX log in dir with Tessera.
func openAppender(ctx context.Context, dir string, signer note.Signer, batch uint, batchAge time.Duration) (
	*tessera.Appender, func(context.Context) error, tessera.LogReader, error,
) {
	driver, err := posix.New(ctx, posix.Config{Path: dir})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("opening log %s: %w", dir, err)
	}
	opts := tessera.NewAppendOptions().
		WithCheckpointSigner(signer).
		WithBatching(batch, batchAge).
		WithCheckpointInterval(checkpointInterval).
		WithGarbageCollectionInterval(gcInterval)
	a, shutdown, reader, err := tessera.NewAppender(ctx, driver, opts)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("opening log %s: %w", dir, err)
	}
	return a, shutdown, reader, nil
}

// appendEntries appends entries in order, waits until a published checkpoint covers them and
// everything integrated before (a previous run may have been killed before publishing), and
// shuts Tessera down.
func appendEntries(ctx context.Context, dir string, key *noteKey, entries [][]byte, batch uint, batchAge time.Duration) (*appendResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	appender, shutdown, reader, err := openAppender(ctx, dir, key.signer, batch, batchAge)
	if err != nil {
		return nil, err
	}
	futures := make([]tessera.IndexFuture, len(entries))
	for i, e := range entries {
		futures[i] = appender.Add(ctx, tessera.NewEntry(e))
	}
	indices := make([]uint64, len(entries))
	for i, f := range futures {
		idx, err := f()
		if err != nil {
			return nil, fmt.Errorf("appending entry %d: %w", i, err)
		}
		indices[i] = idx.Index
	}
	integrated, err := reader.IntegratedSize(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the integrated size of %s: %w", dir, err)
	}
	raw, err := awaitCheckpoint(ctx, reader, integrated)
	if err != nil {
		return nil, err
	}
	if err := shutdown(ctx); err != nil {
		return nil, fmt.Errorf("shutting down the appender: %w", err)
	}
	v, err := note.NewVerifier(key.verifier)
	if err != nil {
		return nil, err
	}
	// Our own key signed it; checking it here catches a checkpoint file not written by this log.
	cp, _, _, err := log.ParseCheckpoint(raw, v.Name(), v)
	if err != nil {
		return nil, fmt.Errorf("%s/checkpoint: %w", dir, err)
	}
	return &appendResult{Indices: indices, Size: cp.Size, Root: cp.Hash, Checkpoint: string(raw)}, nil
}

// awaitCheckpoint polls the published checkpoint until it commits to at least size entries.
func awaitCheckpoint(ctx context.Context, reader tessera.LogReader, size uint64) ([]byte, error) {
	for {
		raw, err := reader.ReadCheckpoint(ctx)
		switch {
		case err == nil:
			cp, err := parseUnverifiedCheckpoint(raw)
			if err != nil {
				return nil, fmt.Errorf("published checkpoint: %w", err)
			}
			if cp.Size >= size {
				return raw, nil
			}
		case !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("reading the published checkpoint: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for a checkpoint of size %d: %w", size, ctx.Err())
		case <-time.After(publishPoll):
		}
	}
}
